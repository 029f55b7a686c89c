import Foundation
import XCTest
import MCPOptGateway
import MCPOptJSON
@testable import MCPOptEngine

/// The gateway: a request's messages reach its caller at its level (a handshake-era session's
/// `logging/setLevel`, a modern request's `_meta` level), named after the server, and no other
/// client session; messages outside requests reach every session that chose a level.
final class GatewayLogTests: LogFixture, @unchecked Sendable {
    struct Client {
        let caller: ServiceCaller
        /// What arrived on its requests' streams, and on its session stream.
        let onRequests = LockedList()
        let onSession = LockedList()

        init(session: String?) {
            let requests = onRequests
            caller = ServiceCaller(session: session, notify: { requests.append(LogFixture.describe($0)) })
        }
    }

    func testARequestsLogsReachItsCallerAtItsLevelAndNoOtherSession() async throws {
        let gateway = Gateway(engine: try makeEngine(port: try startFastMCP()))
        _ = await gateway.start()
        addTeardownBlock { await gateway.engine.stop() }
        let alice = Client(session: "alice"), bob = Client(session: "bob"), modern = Client(session: nil)
        for (client, session, level) in [(alice, "alice", "info"), (bob, "bob", "debug")] {
            let sink = client.onSession
            gateway.setSessionStream(session) { sink.append(LogFixture.describe($0)) }
            let set = #"{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"\#(level)"}}"#
            _ = await gateway.handle(Array(set.utf8), caller: client.caller)
        }
        // Handshake-era caller at info, behind either backend era.
        for server in ["logs_h", "logs_m"] {
            let answer = await gateway.handle(call("\(server)__chatty", #"{"tag":"a-\#(server)"}"#), caller: alice.caller)
            XCTAssertTrue(answer.map { String(decoding: $0, as: UTF8.self).contains("said a-\(server)") } ?? false)
            XCTAssertEqual(alice.onRequests.items, Self.said(server, ["info", "warning"], "a-\(server)"))
            alice.onRequests.clear()
        }
        // Modern-era callers: at the level their request asks for, none without one.
        for server in ["logs_h", "logs_m"] {
            _ = await gateway.handle(call("\(server)__chatty", #"{"tag":"w-\#(server)"}"#, modern: true, level: "warning"), caller: modern.caller)
            XCTAssertEqual(modern.onRequests.items, Self.said(server, ["warning"], "w-\(server)"))
            modern.onRequests.clear()
            _ = await gateway.handle(call("\(server)__chatty", #"{"tag":"n-\#(server)"}"#, modern: true), caller: modern.caller)
            XCTAssertEqual(modern.onRequests.items, [], "a modern request that does not opt in gets no log messages")
        }
        XCTAssertEqual(bob.onRequests.items + bob.onSession.items + alice.onSession.items, [], "no other session hears them, nor any session stream")
        // A stdio server's messages belong to no request: every session that chose a level.
        _ = await gateway.handle(call("log_twice", #"{"message":"hi"}"#), caller: alice.caller)
        XCTAssertEqual(alice.onRequests.items, [])
        XCTAssertEqual(alice.onSession.items, ["kv info info: hi", "kv warning warning: hi"])
        XCTAssertEqual(bob.onSession.items, ["kv info info: hi", "kv warning warning: hi"])
    }
}
