/* test_tcpr_slots.c -- unit tests of the bpf gate's release-slot
 * bookkeeping (tcpr/gate_slots.c): a connection keeps one slot until it is
 * put back, no two live connections share one, slot 0 is never handed out,
 * exhaustion answers 0, a freed slot is reused only after every other free
 * one, and the index survives long runs of random opens and closes
 * (checked against a plain model, with a tiny table so that probe runs
 * collide and wrap). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "gate_int.h"

static void test_init_refuses(void **state) {
  (void)state;
  struct gate_slots s;
  assert_int_equal(gate_slots_init(&s, 0), -EINVAL);
  assert_int_equal(gate_slots_init(&s, 1), -EINVAL);
  assert_int_equal(gate_slots_init(&s, 12), -EINVAL);
}

static void test_get_find_put(void **state) {
  (void)state;
  struct gate_slots s;
  assert_int_equal(gate_slots_init(&s, 8), 0);
  assert_int_equal(gate_slots_find(&s, 1, 2), 0);
  uint32_t a = gate_slots_get(&s, 1, 2);
  assert_true(a != 0 && a < 8);
  assert_int_equal(gate_slots_get(&s, 1, 2), a); /* same connection */
  assert_int_equal(gate_slots_find(&s, 1, 2), a);
  uint32_t b = gate_slots_get(&s, 1, 3);
  assert_true(b != 0 && b != a);
  gate_slots_put(&s, 1, 2);
  assert_int_equal(gate_slots_find(&s, 1, 2), 0);
  assert_int_equal(gate_slots_find(&s, 1, 3), b);
  gate_slots_put(&s, 1, 2); /* twice: nothing */
  gate_slots_put(&s, 9, 9); /* never had one: nothing */
  assert_int_equal(s.nfree, 6);
  gate_slots_free(&s);
  /* A freed table answers 0 and takes puts. */
  assert_int_equal(gate_slots_get(&s, 1, 2), 0);
  assert_int_equal(gate_slots_find(&s, 1, 2), 0);
  gate_slots_put(&s, 1, 2);
}

static void test_exhaustion_and_fifo(void **state) {
  (void)state;
  struct gate_slots s;
  assert_int_equal(gate_slots_init(&s, 8), 0);
  uint32_t got[8] = {0};
  for (uint16_t p = 1; p <= 7; p++) {
    got[p] = gate_slots_get(&s, 7, p);
    assert_true(got[p] != 0);
    for (uint16_t q = 1; q < p; q++) assert_int_not_equal(got[q], got[p]);
  }
  assert_int_equal(gate_slots_get(&s, 7, 100), 0); /* all 7 taken */
  assert_int_equal(gate_slots_find(&s, 7, 100), 0);
  /* Freed in the order 3, 5: handed out again in that order. */
  gate_slots_put(&s, 7, 3);
  gate_slots_put(&s, 7, 5);
  assert_int_equal(gate_slots_get(&s, 8, 1), got[3]);
  assert_int_equal(gate_slots_get(&s, 8, 2), got[5]);
  /* A slot freed while others wait goes behind them. */
  gate_slots_put(&s, 8, 1);
  gate_slots_put(&s, 7, 1);
  gate_slots_put(&s, 8, 2);
  assert_int_equal(gate_slots_get(&s, 9, 1), got[3]);
  assert_int_equal(gate_slots_get(&s, 9, 2), got[1]);
  assert_int_equal(gate_slots_get(&s, 9, 3), got[5]);
  gate_slots_free(&s);
}

/* xorshift: deterministic. */
static uint32_t rnd(uint32_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 17;
  *x ^= *x << 5;
  return *x;
}

static void test_random_against_model(void **state) {
  (void)state;
  enum { NSLOTS = 16, NKEYS = 40, STEPS = 200000 };
  struct gate_slots s;
  assert_int_equal(gate_slots_init(&s, NSLOTS), 0);
  uint32_t model[NKEYS]; /* slot per key, 0: none */
  memset(model, 0, sizeof(model));
  uint32_t live = 0, x = 2463534242u;
  for (int step = 0; step < STEPS; step++) {
    uint32_t k = rnd(&x) % NKEYS;
    /* Keys share hash buckets: addresses differ in high bits only. */
    uint32_t addr = (k % 5) << 24;
    uint16_t port = (uint16_t)(k / 5);
    if (rnd(&x) & 1) {
      uint32_t got = gate_slots_get(&s, addr, port);
      if (model[k] != 0) {
        assert_int_equal(got, model[k]);
      } else if (live == NSLOTS - 1) {
        assert_int_equal(got, 0);
      } else {
        assert_true(got != 0 && got < NSLOTS);
        for (uint32_t j = 0; j < NKEYS; j++) assert_int_not_equal(model[j], got);
        model[k] = got;
        live++;
      }
    } else {
      gate_slots_put(&s, addr, port);
      if (model[k] != 0) live--;
      model[k] = 0;
    }
    /* Every key is found exactly where the model has it. */
    for (uint32_t j = 0; j < NKEYS; j++)
      assert_int_equal(gate_slots_find(&s, (j % 5) << 24, (uint16_t)(j / 5)),
                       model[j]);
    assert_int_equal(s.nfree, NSLOTS - 1 - live);
  }
  gate_slots_free(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_init_refuses),
      cmocka_unit_test(test_get_find_put),
      cmocka_unit_test(test_exhaustion_and_fifo),
      cmocka_unit_test(test_random_against_model),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
