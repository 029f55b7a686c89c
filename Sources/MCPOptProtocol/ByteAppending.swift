/// Appending text to byte buffers on the request path without making Strings: HTTP heads and
/// JSON-RPC envelopes are built straight into the `[UInt8]` that is written.
extension Array where Element == UInt8 {
    /// Appends a literal's bytes.
    @inlinable
    public mutating func append(literal text: StaticString) {
        append(contentsOf: UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Appends HTTP header lines ("Name: value\r\n" each).
    public mutating func append(headerLines headers: [(String, String)]) {
        for (name, value) in headers {
            append(contentsOf: name.utf8)
            append(literal: ": ")
            append(contentsOf: value.utf8)
            append(literal: "\r\n")
        }
    }

    /// Appends `value` in decimal.
    public mutating func append(decimal value: Int) {
        if value < 0 { append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)   // 24 bytes: room for 20 digits
        var count = 0
        Swift.withUnsafeMutableBytes(of: &digits) { buffer in
            repeat {
                buffer[23 - count] = UInt8(ascii: "0") &+ UInt8(magnitude % 10)
                magnitude /= 10
                count += 1
            } while magnitude > 0
            append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[(24 - count)...]))
        }
    }
}
