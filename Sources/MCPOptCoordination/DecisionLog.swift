import CSQLite
import MCPOptSync

/// Where a transaction stands in the coordinator's durable log.
public enum TransactionState: String, Sendable, Equatable {
    /// Prepare requests sent; no decision yet. After a crash: presumed abort.
    case preparing
    /// The decision to commit is durable; participants may not all know yet.
    case committing
    /// The decision to abort is durable.
    case aborting
    /// Every participant acknowledged the decision.
    case committed
    case aborted
}

public struct TransactionRecord: Sendable, Equatable {
    public var id: String
    public var participants: [String]
    public var state: TransactionState
    public init(id: String, participants: [String], state: TransactionState) {
        self.id = id
        self.participants = participants
        self.state = state
    }
}

/// The coordinator's durable decision log. `record` returns only once the state is on disk:
/// a decision must survive a crash before any participant hears it. A record written with
/// `durable: false` may be lost in a crash (the final committed/aborted mark: losing it only
/// means recovery tells the participants again, which they accept as a repeat).
public protocol DecisionLog: Sendable {
    func record(_ transaction: TransactionRecord, durable: Bool) async throws
    /// Transactions not finished (preparing, committing, aborting), oldest first.
    func unfinished() async throws -> [TransactionRecord]
    func find(_ id: String) async throws -> TransactionRecord?
}

extension DecisionLog {
    public func record(_ transaction: TransactionRecord) async throws { try await record(transaction, durable: true) }
}

public struct DecisionLogError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}

/// The decision log in SQLite, WAL mode with `synchronous=FULL`: every commit is fsynced.
public final class SQLiteDecisionLog: DecisionLog, @unchecked Sendable {
    private var db: OpaquePointer?
    private let lock = Lock()
    public let path: String

    public init(path: String) throws(DecisionLogError) {
        self.path = path
        guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nil) == SQLITE_OK else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close(db)
            throw DecisionLogError(description: "cannot open the decision log at \(path): \(message)")
        }
        try execute("PRAGMA journal_mode=WAL")
        try execute("PRAGMA synchronous=FULL")
        try execute("""
            CREATE TABLE IF NOT EXISTS transactions (
              id TEXT PRIMARY KEY,
              participants TEXT NOT NULL,
              state TEXT NOT NULL,
              created INTEGER NOT NULL DEFAULT (strftime('%s','now')),
              updated INTEGER NOT NULL DEFAULT (strftime('%s','now')))
            """)
    }

    deinit { sqlite3_close(db) }

    private func execute(_ sql: String) throws(DecisionLogError) {
        var error: UnsafeMutablePointer<CChar>?
        if sqlite3_exec(db, sql, nil, nil, &error) != SQLITE_OK {
            let message = error.map { String(cString: $0) } ?? "unknown error"
            sqlite3_free(error)
            throw DecisionLogError(description: "decision log: \(message)")
        }
    }

    public func record(_ t: TransactionRecord, durable: Bool) throws {
        try lock.withLock { () throws(DecisionLogError) in
            // synchronous is per connection: NORMAL in WAL mode skips this commit's fsync.
            if !durable { try execute("PRAGMA synchronous=NORMAL") }
            defer { if !durable { try? execute("PRAGMA synchronous=FULL") } }
            var statement: OpaquePointer?
            let sql = """
                INSERT INTO transactions (id, participants, state) VALUES (?1, ?2, ?3)
                ON CONFLICT(id) DO UPDATE SET state = excluded.state, updated = strftime('%s','now')
                """
            guard sqlite3_prepare_v2(db, sql, -1, &statement, nil) == SQLITE_OK else { throw failure("prepare") }
            defer { sqlite3_finalize(statement) }
            sqlite3_bind_text(statement, 1, t.id, -1, mco_sqlite_transient())
            sqlite3_bind_text(statement, 2, t.participants.joined(separator: "\u{1F}"), -1, mco_sqlite_transient())
            sqlite3_bind_text(statement, 3, t.state.rawValue, -1, mco_sqlite_transient())
            guard sqlite3_step(statement) == SQLITE_DONE else { throw failure("write") }
        }
    }

    public func unfinished() throws -> [TransactionRecord] {
        try query("SELECT id, participants, state FROM transactions WHERE state IN ('preparing','committing','aborting') ORDER BY created, rowid", bind: nil)
    }

    public func find(_ id: String) throws -> TransactionRecord? {
        try query("SELECT id, participants, state FROM transactions WHERE id = ?1", bind: id).first
    }

    private func query(_ sql: String, bind: String?) throws -> [TransactionRecord] {
        try lock.withLock { () throws(DecisionLogError) in
            var statement: OpaquePointer?
            guard sqlite3_prepare_v2(db, sql, -1, &statement, nil) == SQLITE_OK else { throw failure("prepare") }
            defer { sqlite3_finalize(statement) }
            if let bind { sqlite3_bind_text(statement, 1, bind, -1, mco_sqlite_transient()) }
            var out: [TransactionRecord] = []
            while sqlite3_step(statement) == SQLITE_ROW {
                let id = String(cString: sqlite3_column_text(statement, 0))
                let participants = String(cString: sqlite3_column_text(statement, 1)).split(separator: "\u{1F}", omittingEmptySubsequences: false).map(String.init)
                let state = TransactionState(rawValue: String(cString: sqlite3_column_text(statement, 2))) ?? .aborting
                out.append(TransactionRecord(id: id, participants: participants.filter { !$0.isEmpty }, state: state))
            }
            return out
        }
    }

    private func failure(_ what: String) -> DecisionLogError {
        DecisionLogError(description: "decision log \(what) failed: \(String(cString: sqlite3_errmsg(db)))")
    }
}
