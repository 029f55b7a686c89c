import XCTest
import MCPOptJSON
@testable import MCPOptConfig

final class ConfigTests: XCTestCase {
    private func issues(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> [String] {
        do {
            _ = try EngineConfig.parse(text)
            XCTFail("expected the configuration to be rejected", file: file, line: line)
            return []
        } catch {
            return error.issues.map { "\($0.path)|\($0.message)" }
        }
    }

    func testEmptyDocumentGivesAllDefaults() throws {
        let config = try EngineConfig.parse("{}")
        XCTAssertEqual(config, EngineConfig())
        XCTAssertEqual(config.caching.memoryCacheSize, 100 << 20)
        XCTAssertEqual(config.routing.maxDecisionTime, .milliseconds(100))
        XCTAssertEqual(config.coordination.consistencyModel, .eventual)
    }

    func testStdioAndHTTPServers() throws {
        let config = try EngineConfig.parse("""
            {"mcpServers": {
              "time": {"command": "uvx", "args": ["mcp-server-time"], "env": {"TZ": "UTC"}, "cwd": "/tmp"},
              "web-1": {"type": "http", "url": "http://127.0.0.1:8080/mcp", "headers": {"Authorization": "Bearer t"}, "group": "web", "weight": 2, "tags": ["eu"]},
              "web-2": {"url": "http://[::1]/mcp?x=1", "group": "web"},
              "off": {"command": "x", "disabled": true}
            }}
            """)
        XCTAssertEqual(config.servers.map(\.name), ["time", "web-1", "web-2", "off"])
        XCTAssertEqual(config.servers[0].transport, .stdio(command: "uvx", args: ["mcp-server-time"], env: [.init(name: "TZ", value: "UTC")], cwd: "/tmp"))
        XCTAssertEqual(config.servers[0].group, "time")
        guard case .http(let url, let headers) = config.servers[1].transport else { return XCTFail() }
        XCTAssertEqual(url, HTTPURL(host: "127.0.0.1", port: 8080, path: "/mcp"))
        XCTAssertEqual(headers, [.init(name: "Authorization", value: "Bearer t")])
        XCTAssertEqual(config.servers[1].weight, 2)
        XCTAssertEqual(config.servers[1].tags, ["eu"])
        guard case .http(let url2, _) = config.servers[2].transport else { return XCTFail() }
        XCTAssertEqual(url2, HTTPURL(host: "::1", port: 80, path: "/mcp?x=1"))
        XCTAssertEqual(config.activeServers.map(\.name), ["time", "web-1", "web-2"])
    }

    func testDurationsAndSizesTakeNumbersOrUnits() throws {
        let config = try EngineConfig.parse("""
            {"routing": {"maxDecisionTime": "250us", "predictionWindow": "2m"},
             "caching": {"memoryCacheSize": "64MiB", "coherenceTimeout": 1500},
             "optimization": {"batchTimeout": "5ms", "busyPoll": "50us"}}
            """)
        XCTAssertEqual(config.routing.maxDecisionTime, .microseconds(250))
        XCTAssertEqual(config.routing.predictionWindow, .seconds(120))
        XCTAssertEqual(config.caching.memoryCacheSize, 64 << 20)
        XCTAssertEqual(config.caching.coherenceTimeout, .milliseconds(1500))
        XCTAssertEqual(config.optimization.batchTimeout, .milliseconds(5))
        XCTAssertEqual(config.optimization.busyPoll, .microseconds(50))
        XCTAssertEqual(try EngineConfig.parse("{}").optimization.busyPoll, .zero, "off unless asked for")
        XCTAssertEqual(try EngineConfig.parse(#"{"caching":{"memoryCacheSize":"1GB"}}"#).caching.memoryCacheSize, 1_000_000_000)
    }

    func testWrongTypesNameTheirPath() {
        XCTAssertEqual(issues(#"{"mcpServers":{"a":{"command":5,"args":["x",3]}}}"#), [
            "$.mcpServers.a.command|expected a string, got a number",
            "$.mcpServers.a.args[1]|expected a string, got a number",
        ])
        XCTAssertEqual(issues(#"{"routing":{"enableAdaptiveRouting":"yes"}}"#), ["$.routing.enableAdaptiveRouting|expected a boolean (true or false), got a string"])
        XCTAssertEqual(issues(#"[]"#), ["$|expected an object, got an array"])
        XCTAssertEqual(issues(#"{"caching":[]}"#), ["$.caching|expected an object, got an array"])
    }

    func testUnknownKeysAreErrorsWithSuggestions() {
        XCTAssertEqual(issues(#"{"routing":{"maxDecisionTme":5}}"#), [#"$.routing.maxDecisionTme|unknown key "maxDecisionTme" (did you mean "maxDecisionTime"?)"#])
        XCTAssertEqual(issues(#"{"mcpservers":{}}"#), [#"$.mcpservers|unknown key "mcpservers" (did you mean "mcpServers"?)"#])
        XCTAssertEqual(issues(#"{"mcpServers":{"a":{"command":"x","autoApprove":[]}}}"#), [#"$.mcpServers.a.autoApprove|unknown key "autoApprove""#])
        XCTAssertNoThrow(try EngineConfig.parse(#"{"$schema":"x","x-note":1,"mcpServers":{"a":{"command":"x","x-owner":"me"}}}"#))
    }

    func testOutOfRangeAndBadEnumValues() {
        XCTAssertEqual(issues(#"{"routing":{"minConfidence":2}}"#), ["$.routing.minConfidence|2 is out of range: must be between 0 and 1"])
        XCTAssertEqual(issues(#"{"caching":{"warmingStrategy":"lazy"}}"#), [#"$.caching.warmingStrategy|"lazy" is not one of "conservative", "adaptive", "aggressive""#])
        XCTAssertEqual(issues(#"{"optimization":{"maxBatchSize":0}}"#), ["$.optimization.maxBatchSize|0 is out of range: must be between 1 and 10000"])
        XCTAssertEqual(issues(#"{"optimization":{"maxBatchSize":2.5}}"#), ["$.optimization.maxBatchSize|expected a whole number, got a number"])
        XCTAssertEqual(issues(#"{"caching":{"memoryCacheSize":"12 parsecs"}}"#).count, 1)
        XCTAssertEqual(issues(#"{"caching":{"memoryCacheSize":1024}}"#), ["$.caching.memoryCacheSize|1024 bytes is out of range: must be a whole number of bytes between 65536 and 1099511627776"])
        XCTAssertEqual(issues(#"{"routing":{"maxDecisionTime":"soon"}}"#).first?.hasPrefix("$.routing.maxDecisionTime|\"soon\" is not a duration"), true)
        XCTAssertEqual(issues(#"{"routing":{"maxDecisionTime":-1}}"#), ["$.routing.maxDecisionTime|must be a duration of at least 0"])
        XCTAssertEqual(issues(#"{"optimization":{"busyPoll":"11ms"}}"#).count, 1)
        XCTAssertEqual(issues(#"{"optimization":{"busyPoll":"11ms"}}"#).first?.hasPrefix("$.optimization.busyPoll|"), true)
        XCTAssertEqual(issues(#"{"mcpServers":{"a":{"command":"x","weight":0}}}"#), ["$.mcpServers.a.weight|must be a number greater than 0, got 0"])
    }

    func testServerShapeProblems() {
        XCTAssertEqual(issues(#"{"mcpServers":{"a":{"command":"x","url":"http://h/"}}}"#), [#"$.mcpServers.a|has both "command" and "url": a server is either stdio (command) or Streamable HTTP (url)"#])
        XCTAssertEqual(issues(#"{"mcpServers":{"a":{}}}"#), [#"$.mcpServers.a|needs "command" (a stdio server) or "url" (a Streamable HTTP server)"#])
        XCTAssertEqual(issues(#"{"mcpServers":{"a":{"url":"http://h/","args":[]}}}"#), ["$.mcpServers.a.args|only applies to stdio servers (this one has a url)"])
        XCTAssertEqual(issues(#"{"mcpServers":{"a":{"command":""}}}"#), ["$.mcpServers.a.command|must not be empty"])
        XCTAssertEqual(issues(#"{"mcpServers":{"a":{"type":"sse","url":"http://h/sse"}}}"#).count, 1)
        XCTAssertEqual(issues(#"{"mcpServers":{"a":{"type":"stdio","url":"http://h/"}}}"#), [#"$.mcpServers.a.type|"stdio" does not match "url": a server with a url is "http""#])
        XCTAssertEqual(issues(#"{"mcpServers":{"my server":{"command":"x"}}}"#), [#"$.mcpServers["my server"]|server name must be 1-64 characters of A-Z, a-z, 0-9, '_', '-' or '.'"#])
        XCTAssertEqual(issues(#"{"mcpServers":{"a":{"url":"http://h/","headers":{"Bad Header":"v","ok":"a\nb"}}}}"#), [
            #"$.mcpServers.a.headers|"Bad Header" is not a valid HTTP header name"#,
            "$.mcpServers.a.headers.ok|header value must not contain CR, LF or NUL",
        ])
        XCTAssertEqual(issues(#"{"mcpServers":{"a":{"command":"x"},"a":{"command":"y"}}}"#), [#"$.mcpServers.a|duplicate key "a""#])
    }

    func testHTTPSServers() throws {
        let config = try EngineConfig.parse(#"{"mcpServers":{"a":{"url":"https://mcp.example.com/mcp"},"b":{"url":"HTTPS://[::1]:8443/m","caFile":"/etc/hostname"}}}"#)
        guard case .http(let a, _) = config.servers[0].transport, case .http(let b, _) = config.servers[1].transport else { return XCTFail() }
        XCTAssertEqual(a, HTTPURL(host: "mcp.example.com", port: 443, path: "/mcp", tls: true))
        XCTAssertEqual(a.description, "https://mcp.example.com:443/mcp")
        XCTAssertEqual(b, HTTPURL(host: "::1", port: 8443, path: "/m", tls: true))
        XCTAssertNil(config.servers[0].caFile)
        XCTAssertEqual(config.servers[1].caFile, "/etc/hostname")
        XCTAssertEqual(issues(#"{"mcpServers":{"a":{"url":"http://h/","caFile":"/etc/hostname"}}}"#), [#"$.mcpServers.a.caFile|only applies to https:// servers"#])
        XCTAssertEqual(issues(#"{"mcpServers":{"a":{"url":"https://h/","caFile":"/no/such/ca.pem"}}}"#), [#"$.mcpServers.a.caFile|cannot read "/no/such/ca.pem": No such file or directory"#])
        // Mutual TLS: a client certificate and its key, both readable, https only.
        let mutual = try EngineConfig.parse(#"{"mcpServers":{"a":{"url":"https://h/","clientCert":"/etc/hostname","clientKey":"/etc/hosts"}}}"#).servers[0]
        XCTAssertEqual(mutual.clientCert, "/etc/hostname")
        XCTAssertEqual(mutual.clientKey, "/etc/hosts")
        XCTAssertEqual(issues(#"{"mcpServers":{"a":{"url":"https://h/","clientCert":"/etc/hostname"}}}"#),
                       [#"$.mcpServers.a.clientKey|clientCert needs it: a client certificate goes with its key"#])
        XCTAssertEqual(issues(#"{"mcpServers":{"a":{"url":"http://h/","clientCert":"/etc/hostname","clientKey":"/etc/hosts"}}}"#),
                       [#"$.mcpServers.a.clientCert|only applies to https:// servers"#, #"$.mcpServers.a.clientKey|only applies to https:// servers"#])
        XCTAssertEqual(issues(#"{"mcpServers":{"a":{"url":"https://h/","clientCert":"/etc/hostname","clientKey":"/no/key.pem"}}}"#),
                       [#"$.mcpServers.a.clientKey|cannot read "/no/key.pem": No such file or directory"#])
        XCTAssertEqual(issues(#"{"mcpServers":{"a":{"command":"x","clientCert":"/etc/hostname"}}}"#), [#"$.mcpServers.a.clientCert|only applies to http servers (this one has a command)"#])
        XCTAssertEqual(issues(#"{"mcpServers":{"a":{"command":"x","caFile":"/etc/hostname"}}}"#), [#"$.mcpServers.a.caFile|only applies to http servers (this one has a command)"#])
    }

    func testURLProblems() {
        for (url, fragment) in [("ftp://h", "must be an http:// or https:// URL"), ("http://u:p@h/", "credentials"),
                                ("http://:80/", "no valid host"), ("http://h:0/", "invalid port"), ("http://h/a b", "percent-encode")] {
            let found = issues(#"{"mcpServers":{"a":{"url":"\#(url)"}}}"#)
            XCTAssertEqual(found.count, 1, url)
            XCTAssertTrue(found.first?.hasPrefix("$.mcpServers.a.url|") == true, url)
            XCTAssertTrue(found.first?.contains(fragment) == true, "\(url): \(found)")
        }
    }

    func testDistributedCacheAcceptsURLOrObject() throws {
        XCTAssertEqual(try EngineConfig.parse(#"{"caching":{"distributed":"redis://127.0.0.1:6379/0"}}"#).caching.distributed?.url, "redis://127.0.0.1:6379/0")
        let d = try EngineConfig.parse(#"{"caching":{"distributed":{"url":"redis://h","keyPrefix":"p:","poolSize":8,"commandTimeout":"50ms"}}}"#).caching.distributed
        XCTAssertEqual(d?.keyPrefix, "p:")
        XCTAssertEqual(d?.poolSize, 8)
        XCTAssertEqual(d?.commandTimeout, .milliseconds(50))
        XCTAssertEqual(issues(#"{"caching":{"distributed":"memcached://h"}}"#).first?.hasPrefix("$.caching.distributed|"), true)
        XCTAssertEqual(issues(#"{"caching":{"distributed":{"poolSize":2}}}"#), [#"$.caching.distributed|needs "url" (redis://host:port/db)"#])
    }

    func testRedisOverTLS() throws {
        let d = try EngineConfig.parse(#"{"caching":{"distributed":{"url":"rediss://cache.example.com:6380/1","caFile":"/etc/hostname"}}}"#).caching.distributed
        XCTAssertEqual(d?.url, "rediss://cache.example.com:6380/1")
        XCTAssertEqual(d?.caFile, "/etc/hostname")
        XCTAssertEqual(try EngineConfig.parse(#"{"caching":{"distributed":"rediss://h"}}"#).caching.distributed?.caFile, nil)
        XCTAssertEqual(issues(#"{"caching":{"distributed":{"url":"redis://h","caFile":"/etc/hostname"}}}"#), [#"$.caching.distributed.caFile|only applies to rediss:// (TLS)"#])
        let mutual = try EngineConfig.parse(#"{"caching":{"distributed":{"url":"rediss://h","clientCert":"/etc/hostname","clientKey":"/etc/hosts"}}}"#).caching.distributed
        XCTAssertEqual(mutual?.clientCert, "/etc/hostname")
        XCTAssertEqual(mutual?.clientKey, "/etc/hosts")
        XCTAssertEqual(issues(#"{"caching":{"distributed":{"url":"redis://h","clientCert":"/etc/hostname","clientKey":"/etc/hosts"}}}"#),
                       [#"$.caching.distributed.clientCert|only applies to rediss:// (TLS)"#, #"$.caching.distributed.clientKey|only applies to rediss:// (TLS)"#])
        XCTAssertEqual(issues(#"{"caching":{"distributed":{"url":"rediss://h","caFile":"/no/ca.pem"}}}"#), [#"$.caching.distributed.caFile|cannot read "/no/ca.pem": No such file or directory"#])
    }

    func testAgentsReferToKnownServersOrGroups() throws {
        let config = try EngineConfig.parse(#"{"mcpServers":{"a":{"command":"x","group":"g"}},"agents":{"bot":{"allowedServers":["a","g"],"allowedTools":["read_*"],"requirements":{"maxResponseTime":"300ms","minSuccessRate":0.99},"priority":"high"}}}"#)
        XCTAssertEqual(config.agents.first?.allowedServers, ["a", "g"])
        XCTAssertEqual(config.agents.first?.requirements, Requirements(maxResponseTime: .milliseconds(300), minSuccessRate: 0.99))
        XCTAssertEqual(config.agents.first?.priority, .high)
        XCTAssertEqual(issues(#"{"mcpServers":{"git":{"command":"x"}},"agents":{"bot":{"allowedServers":["gti"]}}}"#), [#"$.agents.bot.allowedServers[0]|"gti" is not a server or group in mcpServers"#])
        XCTAssertEqual(issues(#"{"agents":{"bot":{"priority":"urgent"}}}"#).count, 1)
    }

    func testMaxServerCountBoundsTheConfiguration() {
        XCTAssertEqual(issues(#"{"targets":{"maxServerCount":1},"mcpServers":{"a":{"command":"x"},"b":{"command":"y"}}}"#), ["$.mcpServers|2 servers configured, more than targets.maxServerCount (1)"])
    }

    func testEveryProblemIsReportedAtOnce() {
        XCTAssertEqual(issues(#"{"routing":{"minConfidence":-1},"caching":{"enableMultiLevel":1},"bogus":true}"#).count, 3)
    }

    func testMalformedAndNonUTF8Documents() {
        do { _ = try EngineConfig.parse(#"{"a":"#); XCTFail() } catch { XCTAssertEqual(error.kind, .malformedJSON); XCTAssertEqual(error.issues.first?.path, .root) }
        let bytes: [UInt8] = Array(#"{"mcpServers":{""#.utf8) + [0xC3, 0x28] + Array(#"":{}}}"#.utf8)
        do { _ = try EngineConfig.parse(bytes); XCTFail() } catch { XCTAssertEqual(error.kind, .invalidUTF8) }
    }

    func testEffectiveConfigRedactsSecretsAndReparses() throws {
        let config = try EngineConfig.parse(#"{"mcpServers":{"a":{"command":"x","env":{"TOKEN":"s3cret"}},"b":{"url":"http://h:81/m","headers":{"Authorization":"Bearer s3cret"}}},"caching":{"distributed":{"url":"redis://h","password":"s3cret"}}}"#)
        let shown = config.effectiveJSON().jsonString
        XCTAssertFalse(shown.contains("s3cret"))
        XCTAssertTrue(shown.contains("<redacted>"))
        // Unredacted, the effective document describes the same configuration.
        XCTAssertEqual(try EngineConfig.parse(config.effectiveJSON(redactingSecrets: false).jsonString), config)
        XCTAssertEqual(try EngineConfig.parse(EngineConfig().effectiveJSON().jsonString), EngineConfig())
    }

    func testPathsQuoteKeysThatAreNotIdentifiers() {
        XCTAssertEqual(ConfigPath.root.appending("mcpServers").appending("a.b").appending("args").appending(index: 2).description, #"$.mcpServers["a.b"].args[2]"#)
        XCTAssertEqual(ConfigPath.root.appending(#"q"uote"#).description, #"$["q\"uote"]"#)
    }
}
