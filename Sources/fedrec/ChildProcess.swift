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

    /// The environment variable naming the parent's pid: a child that finds it watches that parent and stops when
    /// it dies (`stopWithParent()`), so no child outlives a demo killed by any signal.
    static let parentVariable = "FEDREC_PARENT_PID"

    init(name: String, arguments: [String], echo: Bool, executable: URL = ChildProcess.selfExecutable) throws {
        self.name = name
        self.echo = echo
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment[Self.parentVariable] = String(getpid())
        process.environment = environment
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
    /// The exit status, or 128 + the signal number when a signal ended it (as a shell reports it).
    var exitCode: Int32 {
        process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    }
    /// "exit code N" or "killed by signal N".
    var ending: String {
        process.terminationReason == .uncaughtSignal
            ? "killed by signal \(process.terminationStatus)" : "exit code \(process.terminationStatus)"
    }

    /// In a child started by `ChildProcess`: exits at once if the parent is already gone, else watches it from a
    /// background thread and, within a second of its death, points stdout and stderr (the dead parent's pipe) at
    /// /dev/null and sends itself SIGTERM (a graceful stop). Polling, not Linux's `PR_SET_PDEATHSIG`: that fires
    /// when the parent's spawning *thread* exits, and the thread pools that spawn children retire idle threads.
    /// SIGPIPE is ignored, so a write to the pipe before then fails instead of killing the process. Call first.
    static func stopWithParent() {
        guard let text = ProcessInfo.processInfo.environment[parentVariable], let parent = Int32(text) else { return }
        guard getppid() == parent else { exit(10) }
        ignoreBrokenPipes()
        let watcher = Thread {
            while getppid() == parent { Thread.sleep(forTimeInterval: 1) }
            let null = open("/dev/null", O_WRONLY)
            if null >= 0 {
                dup2(null, STDOUT_FILENO)
                dup2(null, STDERR_FILENO)
            }
            kill(getpid(), SIGTERM)
        }
        watcher.name = "parent-watch"
        watcher.start()
    }

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

    /// Waits for the process to end; returns `exitCode`.
    func waitForExit() async throws -> Int32 {
        while process.isRunning { try await Task.sleep(for: .milliseconds(20)) }
        return exitCode
    }

    /// As `waitForExit()`, but SIGKILLs the process once `grace` has passed: a stopped (SIGSTOP) or hung process
    /// never acts on SIGTERM, and the caller must not wait for it forever.
    func waitForExit(killingAfter grace: Duration) async throws -> Int32 {
        let start = ContinuousClock.now
        var killed = false
        while process.isRunning {
            if !killed, ContinuousClock.now - start > grace {
                kill(process.processIdentifier, SIGKILL)
                killed = true
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return exitCode
    }

    func signal(_ signal: Int32) {
        if process.isRunning { kill(process.processIdentifier, signal) }
    }
}

/// SIGPIPE ignored: a write to a pipe nobody reads fails with EPIPE instead of killing the process.
private func ignoreBrokenPipes() {
    signal(SIGPIPE, SIG_IGN)
}
