# tcpr/vip.cmake -- the VIP: taking and giving up the group's address over
# rtnetlink (libmnl) and announcing it with gratuitous ARP (vip.c).
pkg_check_modules(LIBMNL REQUIRED IMPORTED_TARGET libmnl)
target_sources(smr_tcpr PRIVATE ${CMAKE_CURRENT_LIST_DIR}/vip.c)
target_link_libraries(smr_tcpr PUBLIC PkgConfig::LIBMNL)
