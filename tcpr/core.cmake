# The parts of tcpr/ that need no special tool chain: capture/restore
# (repair.c), the replicated connection table (conntab.c) and the keeper.
find_package(OpenSSL REQUIRED)
target_sources(smr_tcpr PRIVATE
  ${CMAKE_CURRENT_SOURCE_DIR}/repair.c
  ${CMAKE_CURRENT_SOURCE_DIR}/conntab.c
  ${CMAKE_CURRENT_SOURCE_DIR}/keeper.c)
target_link_libraries(smr_tcpr PUBLIC smrbuf OpenSSL::Crypto)
