import Glibc

/// (pointer, length) text arguments of the C interface.
enum TextInput {
    /// The bytes of a text argument, or a failure status already recorded as the last error.
    static func bytes(_ pointer: UnsafePointer<CChar>?, _ length: Int, name: String) -> UnsafeRawBufferPointer? {
        guard let pointer else {
            _ = LastError.fail(.invalidArgument, "\(name) is NULL")
            return nil
        }
        // size_t arrives as Int: MCPOPT_NUL_TERMINATED is -1, other negatives are sizes over 2^63.
        let count = length == -1 ? strlen(pointer) : length
        guard count >= 0 else {
            _ = LastError.fail(.invalidArgument, "\(name) length \(length) is not a size")
            return nil
        }
        return UnsafeRawBufferPointer(start: pointer, count: count)
    }
}

/// Copies text into memory the caller frees with mcpopt_free (plain malloc: the process's own).
enum TextOutput {
    static func write(_ text: String, to out: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>, length: UnsafeMutablePointer<Int>?) -> Int32 {
        var text = text
        return text.withUTF8 { utf8 in
            guard let buffer = malloc(utf8.count + 1)?.assumingMemoryBound(to: CChar.self) else {
                return LastError.fail(.internal, "out of memory copying \(utf8.count) bytes")
            }
            if let base = utf8.baseAddress { memcpy(buffer, base, utf8.count) }
            buffer[utf8.count] = 0
            out.pointee = buffer
            length?.pointee = utf8.count
            return LastError.succeed()
        }
    }
}
