import Foundation
import Synchronization

/// A child process whose output lines are collected (and optionally echoed with a prefix) as they arrive.
final class ChildProcess: @unchecked Sendable {
    let name: String
    private let process: Process
    private let lines = Mutex<[String]>([])
    private let partial = Mutex<[UInt8]>([])
    private let echo: Bool

    /// `/proc/self/exe`: this very binary.
    static var selfExecutable: URL { URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath() }

    init(name: String, arguments: [String], echo: Bool, executable: URL = ChildProcess.selfExecutable) throws {
        self.name = name
        self.echo = echo
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        self.process = process
        pipe.fileHandleForReading.readabilityHandler = { [self] handle in
            let data = handle.availableData
            if data.isEmpty {
                handle.readabilityHandler = nil
                return
            }
            self.consume(Array(data))
        }
        try process.run()
    }

    private func consume(_ bytes: [UInt8]) {
        let complete: [String] = partial.withLock { buffer in
            buffer += bytes
            var out: [String] = []
            while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                out.append(String(decoding: buffer[..<newline], as: UTF8.self))
                buffer.removeSubrange(...newline)
            }
            return out
        }
        guard !complete.isEmpty else { return }
        lines.withLock { $0 += complete }
        if echo {
            printFlushed(complete.map { "[\(name)] \($0)" }.joined(separator: "\n"))
        }
    }

    var output: [String] { lines.withLock { $0 } }
    var isRunning: Bool { process.isRunning }
    var pid: Int32 { process.processIdentifier }
    var exitCode: Int32 { process.terminationStatus }

    /// The first output line containing `text`, waiting for it (nil when the process ends first).
    func waitForLine(containing text: String, pollMilliseconds: Int = 20) async throws -> String? {
        while true {
            if let line = output.first(where: { $0.contains(text) }) { return line }
            if !process.isRunning {
                try await Task.sleep(for: .milliseconds(100))
                return output.first { $0.contains(text) }
            }
            try await Task.sleep(for: .milliseconds(pollMilliseconds))
        }
    }

    func waitForExit() async throws -> Int32 {
        while process.isRunning { try await Task.sleep(for: .milliseconds(20)) }
        return process.terminationStatus
    }

    func signal(_ signal: Int32) {
        if process.isRunning { kill(process.processIdentifier, signal) }
    }
}
