// mcpopt-fuzz: fuzz targets for the parsers.
//
// Built normally, it replays inputs: `mcpopt-fuzz TARGET FILE...` runs each file through the
// target (the seed corpus runs this way in the test suite). Built for fuzzing
// (scripts/fuzz: -sanitize=fuzzer -DFUZZING), it hands the target to libFuzzer:
// `MCPOPT_FUZZ_TARGET=config mcpopt-fuzz-config CORPUS_DIR -max_total_time=60`.
import Glibc

#if FUZZING
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

nonisolated(unsafe) var selected: (UnsafeRawBufferPointer) -> Void = { _ in }

// libFuzzer's archive references this entry point even when the driver is started from here.
@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    selected(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
guard let name = getenv("MCPOPT_FUZZ_TARGET").map({ String(cString: $0) }), let target = FuzzTargets.all[name] else {
    print("set MCPOPT_FUZZ_TARGET to one of: \(FuzzTargets.all.keys.sorted().joined(separator: ", "))")
    exit(2)
}
selected = target
var argc = CommandLine.argc
var argv = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOne))
#else
let args = CommandLine.arguments
guard args.count >= 2, let target = FuzzTargets.all[args[1]] else {
    print("usage: mcpopt-fuzz TARGET FILE...   (targets: \(FuzzTargets.all.keys.sorted().joined(separator: ", ")))")
    exit(2)
}
var count = 0
for path in args.dropFirst(2) {
    guard let file = fopen(path, "rb") else { print("cannot open \(path)"); exit(2) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&chunk, 1, chunk.count, file)
        bytes += chunk[0..<n]
        if n < chunk.count { break }
    }
    fclose(file)
    bytes.withUnsafeBytes { target($0) }
    count += 1
}
print("fuzz replay (\(args[1])): \(count) passed, 0 failed")
#endif
