import CMCPOptConcurrency

/// A server's circuit breaker, kept in one atomic word of its stats cell so that routing reads
/// it without a lock: bits 0-1 the state, bit 2 "a half-open probe is in flight", bits 8 and up
/// the time (ms) the circuit opened.
///
/// closed -> open: the last `consecutiveFailures` outcomes all failed, or the recent window holds
/// at least `minimumRequests` outcomes and at least `failureRateThreshold` of them failed. open -> half-open: `openDuration` has passed and a
/// request takes the single probe slot. half-open -> closed on the probe's success (the window
/// starts afresh), -> open again on its failure.
public enum CircuitState: String, Sendable, Equatable {
    case closed, open, halfOpen = "half-open"
}

enum CircuitBreaker {
    private static let stateMask: UInt64 = 3, probeBit: UInt64 = 4
    private static let closedCode: UInt64 = 0, openCode: UInt64 = 1, halfOpenCode: UInt64 = 2

    /// How routing may use a server now.
    enum Admission { case allowed, probe, excluded }

    static func state(_ cell: StatsCell) -> CircuitState {
        switch mco_load64(cell.words + StatsCell.breaker) & stateMask {
        case openCode: .open
        case halfOpenCode: .halfOpen
        default: .closed
        }
    }

    @inline(__always)
    static func admission(_ cell: StatsCell, nowMillis: UInt64, settings: CircuitBreakerSettings) -> Admission {
        let word = mco_load64(cell.words + StatsCell.breaker)
        switch word & stateMask {
        case closedCode: return .allowed
        case openCode:
            let openedAt = word >> 8
            return nowMillis >= openedAt + UInt64(settings.openDuration.milliseconds) ? .probe : .excluded
        default:
            return word & probeBit != 0 ? .excluded : .probe
        }
    }

    /// Takes the half-open probe slot (moving an expired open circuit to half-open); false when
    /// another request took it first.
    static func acquireProbe(_ cell: StatsCell, nowMillis: UInt64, settings: CircuitBreakerSettings) -> Bool {
        let word = mco_load64(cell.words + StatsCell.breaker)
        guard admission(cell, nowMillis: nowMillis, settings: settings) == .probe else { return false }
        let next = (word & ~(stateMask | probeBit)) | halfOpenCode | probeBit
        return mco_cas64(cell.words + StatsCell.breaker, word, next) != 0
    }

    /// Applies an outcome (after it was recorded in the cell's window).
    static func afterOutcome(_ cell: StatsCell, success: Bool, nowMillis: UInt64, settings: CircuitBreakerSettings) {
        let word = mco_load64(cell.words + StatsCell.breaker)
        switch word & stateMask {
        case closedCode:
            let count = cell.windowCount
            guard !success else { return }
            let streak = min(max(settings.consecutiveFailures, 1), 64)
            let streakMask: UInt64 = streak == 64 ? .max : (1 << UInt64(streak)) - 1
            let failedInARow = count >= streak && mco_load64(cell.words + StatsCell.window) & streakMask == 0
            let failingRate = count >= settings.minimumRequests && 1 - cell.successRate >= settings.failureRateThreshold
            guard failedInARow || failingRate else { return }
            _ = mco_cas64(cell.words + StatsCell.breaker, word, nowMillis << 8 | openCode)
        case halfOpenCode:
            if success {
                if mco_cas64(cell.words + StatsCell.breaker, word, closedCode) != 0 { cell.resetWindow() }
            } else {
                _ = mco_cas64(cell.words + StatsCell.breaker, word, nowMillis << 8 | openCode)
            }
        default:
            break   // open: outcomes of requests sent before it opened change nothing
        }
    }

    /// Forces a state (operators, tests).
    static func force(_ cell: StatsCell, _ state: CircuitState, nowMillis: UInt64) {
        switch state {
        case .closed: mco_store64(cell.words + StatsCell.breaker, closedCode); cell.resetWindow()
        case .open: mco_store64(cell.words + StatsCell.breaker, nowMillis << 8 | openCode)
        case .halfOpen: mco_store64(cell.words + StatsCell.breaker, halfOpenCode)
        }
    }
}

extension Duration {
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    var nanosecondsDouble: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1e9 + Double(attoseconds) / 1e9
    }
}
