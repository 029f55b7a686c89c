# The whole suite, under ctest: Swift unit tests (and ThreadSanitizer on the concurrent ones),
# the C host against the installed package (plain, under valgrind, and via pkg-config), the
# exported-symbol check, the Python and Node bindings, and the program.
find_program(VALGRIND valgrind)
find_program(NODE_EXECUTABLE node)
set(MCPOPT_PYTHON "" CACHE FILEPATH "Python with pytest for the binding tests")
if(NOT MCPOPT_PYTHON)
  if(EXISTS ${CMAKE_SOURCE_DIR}/.venv/bin/python)
    set(MCPOPT_PYTHON ${CMAKE_SOURCE_DIR}/.venv/bin/python)
  else()
    find_program(MCPOPT_PYTHON python3 REQUIRED)
  endif()
endif()

set(STAGE ${CMAKE_BINARY_DIR}/stage)
set(EXAMPLE_CONFIG ${CMAKE_SOURCE_DIR}/examples/mcpopt.json)

# Install into a staging prefix: the C host and the bindings test what users get.
add_test(NAME install_stage COMMAND ${CMAKE_COMMAND} --install ${CMAKE_BINARY_DIR} --prefix ${STAGE})
set_tests_properties(install_stage PROPERTIES FIXTURES_SETUP staged)

add_test(NAME abi_exports COMMAND ${CMAKE_SOURCE_DIR}/scripts/check-abi ${STAGE}/lib/libmcpopt.so.1 ${CMAKE_SOURCE_DIR}/include/mcpopt.h)
set_tests_properties(abi_exports PROPERTIES FIXTURES_REQUIRED staged)

# Swift unit tests; SwiftPM keeps its own build folders beside the release one.
add_test(NAME swift_unit COMMAND ${CMAKE_COMMAND} -E env MCPOPT_VENV=${CMAKE_SOURCE_DIR}/.venv
         ${SWIFT_EXECUTABLE} test --package-path ${CMAKE_SOURCE_DIR}
         --scratch-path ${CMAKE_BINARY_DIR}/swiftpm-debug --parallel --num-workers 2)
add_test(NAME swift_tsan COMMAND ${CMAKE_SOURCE_DIR}/scripts/swift-tsan ${CMAKE_SOURCE_DIR} ${CMAKE_BINARY_DIR}/swiftpm-tsan)
set_tests_properties(swift_unit swift_tsan PROPERTIES TIMEOUT 1500)

# The C host, built by a separate consumer project through find_package(mcpopt).
add_test(NAME c_host_build COMMAND ${CMAKE_COMMAND} -E env CFLAGS=
         sh -c "${CMAKE_COMMAND} -S ${CMAKE_SOURCE_DIR}/Tests/CHost -B ${CMAKE_BINARY_DIR}/c-host -DCMAKE_PREFIX_PATH=${STAGE} -DCMAKE_BUILD_TYPE=Debug >/dev/null && ${CMAKE_COMMAND} --build ${CMAKE_BINARY_DIR}/c-host")
set_tests_properties(c_host_build PROPERTIES FIXTURES_REQUIRED staged FIXTURES_SETUP chost)
add_test(NAME c_host COMMAND ${CMAKE_COMMAND} -E env MCPOPT_PYTHON=${MCPOPT_PYTHON} MCPOPT_REPO=${CMAKE_SOURCE_DIR}
         ${CMAKE_BINARY_DIR}/c-host/mcpopt_c_host ${EXAMPLE_CONFIG})
set_tests_properties(c_host PROPERTIES FIXTURES_REQUIRED chost)
if(VALGRIND)
  # Valgrind cannot follow io_uring (the kernel writes the rings behind its back): epoll there.
  add_test(NAME c_host_valgrind COMMAND ${CMAKE_COMMAND} -E env MCPOPT_IO=epoll MCPOPT_PYTHON=${MCPOPT_PYTHON} MCPOPT_REPO=${CMAKE_SOURCE_DIR}
           ${VALGRIND} --quiet --leak-check=full --show-leak-kinds=definite,indirect
           --errors-for-leak-kinds=definite,indirect --error-exitcode=1
           ${CMAKE_BINARY_DIR}/c-host/mcpopt_c_host ${EXAMPLE_CONFIG})
  set_tests_properties(c_host_valgrind PROPERTIES FIXTURES_REQUIRED chost TIMEOUT 600)
endif()
add_test(NAME c_host_pkgconfig COMMAND sh -c
  "cc -std=c11 -Wall -Werror -o ${CMAKE_BINARY_DIR}/c-host-pc ${CMAKE_SOURCE_DIR}/Tests/CHost/host.c $(PKG_CONFIG_PATH=${STAGE}/lib/pkgconfig pkg-config --cflags --libs mcpopt) -lpthread && LD_LIBRARY_PATH=${STAGE}/lib ${CMAKE_BINARY_DIR}/c-host-pc ${EXAMPLE_CONFIG}")
set_tests_properties(c_host_pkgconfig PROPERTIES FIXTURES_REQUIRED staged)

# Python binding: pytest against the staged library.
add_test(NAME python_binding COMMAND ${CMAKE_COMMAND} -E env MCPOPT_LIBRARY=${STAGE}/lib/libmcpopt.so.1
         MCPOPT_EXAMPLE_CONFIG=${EXAMPLE_CONFIG} PYTHONPATH=${CMAKE_SOURCE_DIR}/bindings/python
         ${MCPOPT_PYTHON} -m pytest -q ${CMAKE_SOURCE_DIR}/bindings/python/tests)
set_tests_properties(python_binding PROPERTIES FIXTURES_REQUIRED staged)

# Node binding: node's own test runner against the addon built here.
if(MCPOPT_NODE_ADDON AND NODE_EXECUTABLE)
  add_test(NAME node_binding COMMAND ${CMAKE_COMMAND} -E env MCPOPT_NODE_ADDON=${MCPOPT_NODE_ADDON} MCPOPT_PYTHON=${MCPOPT_PYTHON}
           MCPOPT_EXAMPLE_CONFIG=${EXAMPLE_CONFIG}
           ${NODE_EXECUTABLE} --test ${CMAKE_SOURCE_DIR}/bindings/node/test/)
endif()

# The program.
add_test(NAME cli COMMAND ${CMAKE_SOURCE_DIR}/scripts/check-cli ${CMAKE_BINARY_DIR}/bin/mcpopt ${EXAMPLE_CONFIG})

# The gateway judged by real MCP clients (official SDK in both eras, FastMCP) against real servers.
foreach(front stdio http)
  add_test(NAME gateway_${front} COMMAND ${MCPOPT_PYTHON} ${CMAKE_SOURCE_DIR}/Tests/interop/gateway_check.py ${CMAKE_BINARY_DIR}/bin/mcpopt ${front})
  set_tests_properties(gateway_${front} PROPERTIES TIMEOUT 300)
endforeach()
# The same over HTTP with the front's loop busy polling (serve --busy-poll): every wait of the
# loop goes through the poll first, so the whole protocol runs through it.
add_test(NAME gateway_http_busy_poll COMMAND ${MCPOPT_PYTHON} ${CMAKE_SOURCE_DIR}/Tests/interop/gateway_check.py ${CMAKE_BINARY_DIR}/bin/mcpopt http --busy-poll 200us)
set_tests_properties(gateway_http_busy_poll PROPERTIES TIMEOUT 300)

# The gateway in front of an https:// server (FastMCP behind uvicorn's TLS, a CA made per run).
add_test(NAME gateway_tls COMMAND ${MCPOPT_PYTHON} ${CMAKE_SOURCE_DIR}/Tests/interop/tls_check.py ${CMAKE_BINARY_DIR}/bin/mcpopt)
set_tests_properties(gateway_tls PROPERTIES TIMEOUT 300)

# Two gateways sharing one Redis (started and stopped by the test) behave as one cache.
add_test(NAME shared_cache COMMAND ${MCPOPT_PYTHON} ${CMAKE_SOURCE_DIR}/Tests/interop/shared_check.py ${CMAKE_BINARY_DIR}/bin/mcpopt)
set_tests_properties(shared_cache PROPERTIES TIMEOUT 300)

# Two-phase commit and fan-out across real participant servers (stdio and HTTP), crash recovery.
add_test(NAME coordination COMMAND ${CMAKE_COMMAND} -E env MCPOPT_LIBRARY=${STAGE}/lib/libmcpopt.so.1
         PYTHONPATH=${CMAKE_SOURCE_DIR}/bindings/python ${MCPOPT_PYTHON} ${CMAKE_SOURCE_DIR}/Tests/interop/coordination_check.py)
set_tests_properties(coordination PROPERTIES TIMEOUT 300 FIXTURES_REQUIRED staged)

# The mock server judged by real MCP clients, its faults, and a small run of the demo.
add_test(NAME mock_and_demo COMMAND ${MCPOPT_PYTHON} ${CMAKE_SOURCE_DIR}/Tests/interop/mock_check.py ${CMAKE_BINARY_DIR}/bin/mcpopt)
set_tests_properties(mock_and_demo PROPERTIES TIMEOUT 600)

# Parsers under libFuzzer + AddressSanitizer, briefly (scripts/fuzz TARGET SECONDS for longer).
foreach(target json config rpc http sse cache repeat)
  add_test(NAME fuzz_${target} COMMAND ${CMAKE_SOURCE_DIR}/scripts/fuzz ${target} 20)
  set_tests_properties(fuzz_${target} PROPERTIES TIMEOUT 900 RESOURCE_LOCK fuzz_build)
endforeach()

# The Python package installs with pip, and finds a library placed next to it (no MCPOPT_LIBRARY).
add_test(NAME python_pip_install COMMAND sh -c
  "rm -rf ${CMAKE_BINARY_DIR}/pyinstall && ${MCPOPT_PYTHON} -m pip install -q --disable-pip-version-check --no-deps --target ${CMAKE_BINARY_DIR}/pyinstall ${CMAKE_SOURCE_DIR}/bindings/python && cp ${STAGE}/lib/libmcpopt.so.1 ${CMAKE_BINARY_DIR}/pyinstall/mcpopt/ && cd / && env -u MCPOPT_LIBRARY PYTHONPATH=${CMAKE_BINARY_DIR}/pyinstall ${MCPOPT_PYTHON} -c \"import mcpopt, pathlib; e = mcpopt.Engine({}); assert e.describe()['servers']['active'] == 0; e.close(); assert pathlib.Path(mcpopt._native.lib()._name).parent == pathlib.Path(mcpopt.__file__).parent, mcpopt._native.lib()._name; print('pip install: 1 passed, 0 failed')\"")
set_tests_properties(python_pip_install PROPERTIES FIXTURES_REQUIRED staged)
