import XCTest
@testable import MCPOptEngine

/// Whom a server's request to "its client" goes to, on a backend shared by many clients.
final class ServerRequestRoutesTests: XCTestCase {
    final class FakeBackend {}

    func answer(_ routes: ServerRequestRoutes, _ backend: AnyObject) async -> String? {
        guard case .success(let ask) = routes.route(backend) else { return nil }
        return (await ask([])).map { String(decoding: $0, as: UTF8.self) }
    }

    func testTheOneClientWithARequestRunningAnswers() async {
        let routes = ServerRequestRoutes()
        let a = FakeBackend(), b = FakeBackend()
        guard case .failure(let none) = routes.route(a) else { return XCTFail("nobody to ask yet") }
        XCTAssertTrue(none.reason.contains("no client request"), none.reason)

        let alice1 = routes.register(a, caller: "alice", ask: { _ in Array("alice".utf8) })
        let alice2 = routes.register(a, caller: "alice", ask: { _ in Array("alice".utf8) })
        _ = routes.register(b, caller: "bob", ask: { _ in Array("bob".utf8) })
        let onA = await answer(routes, a), onB = await answer(routes, b)
        XCTAssertEqual(onA, "alice", "two requests of one client: that client")
        XCTAssertEqual(onB, "bob", "each backend its own")

        let carol = routes.register(a, caller: "carol", ask: { _ in Array("carol".utf8) })
        guard case .failure(let several) = routes.route(a) else { return XCTFail("two clients on one backend: unknown which") }
        XCTAssertTrue(several.reason.contains("several clients"), several.reason)

        routes.unregister(a, alice1)
        routes.unregister(a, alice2)
        let afterAlice = await answer(routes, a)
        XCTAssertEqual(afterAlice, "carol", "alice's requests ended")
        routes.unregister(a, carol)
        guard case .failure = routes.route(a) else { return XCTFail("all ended") }
    }
}
