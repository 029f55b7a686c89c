import CMCPOptTLS

/// How a TLS client checks its server: against the system's CA store, or against the PEM
/// bundle `caFile` (a private CA); the certificate must also name the endpoint's host. With
/// `clientCertificate` and `clientKey` (PEM files) it presents a certificate of its own to a
/// server that asks for one (mutual TLS).
public struct TLSOptions: Sendable, Equatable {
    public var caFile: String?
    public var clientCertificate: String?
    public var clientKey: String?
    public init(caFile: String? = nil, clientCertificate: String? = nil, clientKey: String? = nil) {
        self.caFile = caFile
        self.clientCertificate = clientCertificate
        self.clientKey = clientKey
    }
}

/// What a TLS client trusts (the system's CA store, or a PEM bundle of its own), and the
/// certificate it presents when it has one (`TLSOptions`). One per upstream; its connections
/// share it.
public final class TLSTrust: @unchecked Sendable {
    let context: OpaquePointer
    public let options: TLSOptions

    /// Fails with OpenSSL's reason when the bundle, the client certificate or its key cannot be
    /// read, or the key is not the certificate's.
    public init(_ options: TLSOptions) throws(TLSSetupError) {
        var error = [CChar](repeating: 0, count: 512)
        guard let context = mco_tls_context_new(options.caFile, options.clientCertificate, options.clientKey, &error, error.count) else {
            throw TLSSetupError(cString: error)
        }
        self.context = context
        self.options = options
    }

    deinit { mco_tls_context_free(context) }
}

/// What a TLS server presents: a certificate chain and its private key (PEM files). One per
/// listener; its connections share it.
public final class TLSServerCredentials: @unchecked Sendable {
    let context: OpaquePointer
    public let certificateFile: String

    /// Fails with OpenSSL's reason when a file cannot be read or the key is not the certificate's.
    public init(certificateFile: String, keyFile: String) throws(TLSSetupError) {
        var error = [CChar](repeating: 0, count: 512)
        guard let context = mco_tls_server_context_new(certificateFile, keyFile, &error, error.count) else {
            throw TLSSetupError(cString: error)
        }
        self.context = context
        self.certificateFile = certificateFile
    }

    deinit { mco_tls_context_free(context) }
}

/// A TLS context that could not be set up (CAs, a certificate or a key that do not load).
public struct TLSSetupError: Error, Sendable, CustomStringConvertible {
    public let message: String
    /// The message the C side wrote into `buffer` (NUL-terminated).
    init(cString buffer: [CChar]) {
        message = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    public var description: String { message }
}

/// One connection's TLS session (client or server), on the loop thread: ciphertext in from
/// the socket, plaintext out to the HTTP parser, and back. It never touches the descriptor.
public final class TLSConnection {
    private let tls: OpaquePointer
    private let context: AnyObject   // a TLSTrust or TLSServerCredentials: outlives its sessions
    /// Where plaintext is decrypted to: a TLS record's largest, once per connection.
    private var plaintext = [UInt8](repeating: 0, count: 16_384)

    /// A client session to `host`, checked against `trust`.
    public init?(trust: TLSTrust, host: String) {
        guard let tls = mco_tls_new(trust.context, host) else { return nil }
        self.tls = tls
        context = trust
    }

    /// Client sessions: whether the server asked for a certificate (mutual TLS).
    public var certificateRequested: Bool { mco_tls_certificate_requested(tls) != 0 }

    /// Whether the handshake resumed an earlier session of the same trust (an upstream's).
    public var resumed: Bool { mco_tls_resumed(tls) != 0 }

    /// A server session of an accepted connection.
    public init?(server: TLSServerCredentials) {
        guard let tls = mco_tls_new_server(server.context) else { return nil }
        self.tls = tls
        context = server
    }

    deinit { mco_tls_free(tls) }

    var isEstablished: Bool { mco_tls_handshake_done(tls) != 0 }
    private var error: String { String(cString: mco_tls_error(tls)) }

    /// Drives the handshake: true when it is done, false when it waits for the peer; throws
    /// its failure (a certificate refused, a protocol error). Its bytes wait in `takeOutput`.
    public func handshake() throws(TLSFailure) -> Bool {
        switch mco_tls_handshake(tls) {
        case Int32(MCO_TLS_OK): return true
        case Int32(MCO_TLS_WANT): return false
        default: throw TLSFailure(message: error)
        }
    }

    /// Ciphertext from the peer.
    private func feed(_ bytes: UnsafeRawBufferPointer) throws(TLSFailure) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        if mco_tls_feed(tls, base, bytes.count) != Int32(MCO_TLS_OK) { throw TLSFailure(message: error) }
    }

    /// Ciphertext from the peer, the one step every user of a session takes: fed, then the
    /// handshake's next step (`established` runs when it completes: what waited for it, such
    /// as a client's first request, can be written then), then each piece of plaintext to
    /// `plaintext`. False once the peer has closed the session. What the session has for the
    /// peer (handshake flights, what `established` wrote) waits in `takeOutput`.
    public func receive(_ bytes: UnsafeRawBufferPointer, established: () throws(TLSFailure) -> Void = {},
                        plaintext: (UnsafeRawBufferPointer) -> Void) throws(TLSFailure) -> Bool {
        try feed(bytes)
        if !isEstablished {
            guard try handshake() else { return true }
            try established()
        }
        return try readPlaintext(plaintext)
    }

    /// Hands `body` each piece of plaintext the fed ciphertext holds; returns false once the
    /// peer has closed the session.
    private func readPlaintext(_ body: (UnsafeRawBufferPointer) -> Void) throws(TLSFailure) -> Bool {
        while true {
            var read = 0
            let status = plaintext.withUnsafeMutableBytes { mco_tls_read(tls, $0.baseAddress, $0.count, &read) }
            switch status {
            case Int32(MCO_TLS_OK): plaintext.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[..<read])) }
            case Int32(MCO_TLS_WANT): return true
            case Int32(MCO_TLS_CLOSED): return false
            default: throw TLSFailure(message: error)
            }
        }
    }

    /// Encrypts plaintext; its ciphertext waits in `takeOutput`.
    public func write(_ bytes: [UInt8]) throws(TLSFailure) {
        let status = bytes.withUnsafeBytes { mco_tls_write(tls, $0.baseAddress, $0.count) }
        if status != Int32(MCO_TLS_OK) { throw TLSFailure(message: error) }
    }

    /// The ciphertext waiting for the peer (empty when none).
    public func takeOutput() -> [UInt8] {
        let length = mco_tls_output_length(tls)
        guard length > 0 else { return [] }
        var out = [UInt8](repeating: 0, count: length)
        let taken = out.withUnsafeMutableBytes { mco_tls_take_output(tls, $0.baseAddress, $0.count) }
        out.removeLast(out.count - taken)
        return out
    }
}

public struct TLSFailure: Error, Sendable {
    public let message: String
}
