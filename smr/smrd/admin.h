/* admin.h -- smrd's admin socket: local, permission-checked, JSON lines.
 *
 * Protocol: a client connects to the Unix socket, writes one request, a
 * JSON object on one line such as {"cmd": "status"}, and reads one JSON
 * object on one line: the command's result, or {"error": "reason"}.  The
 * server then closes the connection. */
#ifndef SMR_SMRD_ADMIN_H
#define SMR_SMRD_ADMIN_H

#include <jansson.h>
#include <stddef.h>

struct ev_loop;
struct smrd_admin;

/* Handles one request; returns a new JSON object (the reply), or NULL with
 * a reason in err. */
typedef json_t *(*smrd_admin_fn)(void *ctx, const char *cmd, json_t *req,
                                 char *err, size_t errlen);

/* Creates the socket at path (mode 0600; a stale socket file is replaced,
 * a live one is refused) and serves it on loop.  Only root and the user
 * smrd runs as may use it (checked with SO_PEERCRED on every connection). */
int smrd_admin_open(struct ev_loop *loop, const char *path, smrd_admin_fn fn,
                    void *ctx, struct smrd_admin **out, char *err,
                    size_t errlen);
void smrd_admin_close(struct smrd_admin *a);

/* Client side (smrctl): sends req and returns the reply, or NULL with a
 * reason in err. */
json_t *smrd_admin_call(const char *path, json_t *req, int timeout_ms,
                        char *err, size_t errlen);

#endif
