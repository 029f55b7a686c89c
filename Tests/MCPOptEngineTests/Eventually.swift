import Foundation
import XCTest

extension XCTestCase {
    /// Polls `condition` (every 10 ms, at most `seconds`) and fails the test if it never holds.
    func eventually(_ what: String, seconds: Double = 5, _ condition: () async -> Bool) async {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if await condition() { return }
            try? await Task.sleep(for: .milliseconds(10))
        }
        XCTFail("not within \(seconds) s: \(what)")
    }
}
