import ArgumentParser
import FedRecClient
import FedRecCoordinator
import FedRecFederation
import FedRecProtocol
import Foundation
import GRPCNIOTransportHTTP2
import Logging
import Synchronization

#if canImport(CFedRecAllocator)
    import CFedRecAllocator
#endif

/// Exit codes of `fedrec coordinator` and `fedrec client` (and `fedrec demo`), stable for scripts.
enum FederationExit {
    /// Training completed (the coordinator ran its last round; a client heard that it did).
    static let completed: Int32 = 0
    /// Unexpected failure.
    static let failure: Int32 = 1
    /// A round failed more often than allowed (`--max-attempts`).
    static let roundFailed: Int32 = 3
    /// Enrolment refused, or the coordinator is not the pinned one.
    static let enrolmentRefused: Int32 = 4
    /// The coordinator could not be reached within `--connect-timeout`.
    static let unreachable: Int32 = 5
    /// The state folder cannot be used (unreadable, or another run's).
    static let state: Int32 = 6
    /// Bad data set, keys or allow-list, or an `--address` the coordinator cannot listen on.
    static let setup: Int32 = 7
    /// The configured rounds would exceed the privacy budget (`--target-epsilon`); nothing was run.
    static let privacyBudget: Int32 = 8
    /// Stopped by SIGINT/SIGTERM before training finished (the coordinator's state is saved: resumable).
    static let interrupted: Int32 = 10

    /// Prints `error` and returns the exit code that says what happened.
    static func code(for error: any Error) -> Int32 {
        let (code, text): (Int32, String)
        if let listen = ListenFailure.find(in: error) {
            writeUnchecked(STDERR_FILENO, "Error: \(listen)\n")
            return setup
        }
        switch error {
        case let e as CoordinatorError:
            switch e.code {
            case .roundFailed: (code, text) = (roundFailed, e.message)
            case .state: (code, text) = (state, e.message)
            case .setup: (code, text) = (setup, e.message)
            case .interrupted: (code, text) = (interrupted, e.message)
            case .privacyBudget: (code, text) = (privacyBudget, e.message)
            default: (code, text) = (failure, e.message)
            }
        case let e as ClientError:
            switch e.code {
            case .enrolmentRefused, .coordinatorMismatch: (code, text) = (enrolmentRefused, e.message)
            case .unreachable: (code, text) = (unreachable, e.message)
            case .setup: (code, text) = (setup, e.message)
            case .interrupted: (code, text) = (interrupted, e.message)
            default: (code, text) = (failure, e.message)
            }
        default: (code, text) = (failure, "\(error)")
        }
        writeUnchecked(STDERR_FILENO, "Error: \(text)\n")
        return code
    }
}

/// swift-log to standard error, once per process.
enum ProcessLogging {
    private static let bootstrapped = Mutex(false)

    static func logger(label: String, level: String) -> Logger {
        let parsed = Logger.Level(rawValue: level) ?? .info
        let first = bootstrapped.withLock { done in
            defer { done = true }
            return !done
        }
        if first {
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = parsed
                return handler
            }
        }
        var logger = Logger(label: label)
        logger.logLevel = parsed
        return logger
    }
}

/// `HOST:PORT` of an `--address` / `--coordinator` option.
struct HostPort: ExpressibleByArgument, Sendable {
    var host: String
    var port: Int

    /// How `--help` shows a default: `127.0.0.1:50051`.
    var defaultValueDescription: String { "\(host):\(port)" }

    /// The host must be an IPv4 address (`127.0.0.1`, the default, or `0.0.0.0` to listen on every interface):
    /// the transports bind and connect to addresses, and a name such as `localhost` never listens.
    init?(argument: String) {
        guard let colon = argument.lastIndex(of: ":"), let port = Int(argument[argument.index(after: colon)...]),
            (0...65_535).contains(port), colon != argument.startIndex
        else { return nil }
        host = String(argument[..<colon])
        var address = in_addr()
        guard inet_pton(AF_INET, host, &address) == 1 else { return nil }
        self.port = port
    }

    var description: String { "\(host):\(port)" }
}

/// Flushes stdout after each progress line (output may be a pipe).
func printFlushed(_ line: String) {
    writeUnchecked(STDOUT_FILENO, line + "\n")
}

/// Writes `text` to `descriptor` with write(2), dropping it on an error: FileHandle.write traps when the reader
/// of a pipe is gone (a demo killed outright), and a process must get to its graceful stop instead.
func writeUnchecked(_ descriptor: Int32, _ text: String) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        if written < 0 && errno == EINTR { continue }
        guard written > 0 else { return }
        bytes = bytes.dropFirst(written)
    }
}

/// HTTP/2 settings of the coordinator's and clients' gRPC transports, sized for payloads of about a megabyte
/// per message: gRPC's defaults (16 KiB frames; a 64 KiB receive window on the server) make every 1 MiB chunk
/// 64 frames and stall each upload for a WINDOW_UPDATE every 64 KiB, a process round trip each on a busy host.
enum TransportTuning {
    /// Largest frame either side accepts (RFC 9113 allows up to 2^24 - 1): one frame per 1 MiB chunk message.
    static let maximumFrameSize = 4 << 20
    /// Flow-control window per stream and connection: a whole model payload in flight without waiting.
    static let windowSize = 32 << 20

    /// A client pings a connection that has been quiet this long, and drops it when the ping is not answered
    /// within `keepaliveTimeout`: a coordinator that stopped answering (a stopped or frozen process, a wrong
    /// port that accepts and stays silent) fails the client's call instead of holding it forever, and the
    /// client's retry and `--connect-timeout` take over.
    static let keepaliveTime: Duration = .seconds(30)
    static let keepaliveTimeout: Duration = .seconds(10)

    /// Largest request message the coordinator reads: a 1 MiB payload chunk with its header (an enrolment of
    /// about 7,000 clients in one request also fits). gRPC's default is 4 MiB, and a peer that announces one
    /// and sends all but its last byte pins it.
    static let maximumRequestMessage = ChunkPlan.defaultChunkSize + (64 << 10)
    /// Streams one connection may have open at once (a client process uses a few; NIO's unannounced default
    /// is 100), so a connection pins at most this many partly received messages.
    static let maximumStreamsPerConnection = 16
    /// A connection without streams for this long is closed (a client reconnects on its next call), and the
    /// coordinator pings a peer that has been quiet for `serverKeepaliveTime`, dropping it after 20 s without
    /// an answer: silent sockets do not hold descriptors for gRPC's default 2 hours.
    static let maximumIdleTime: Duration = .seconds(60)
    static let serverKeepaliveTime: Duration = .seconds(60)

    static var server: HTTP2ServerTransport.Posix.Config {
        var config = HTTP2ServerTransport.Posix.Config.defaults
        config.http2.maxFrameSize = maximumFrameSize
        config.http2.targetWindowSize = windowSize
        config.http2.maxConcurrentStreams = maximumStreamsPerConnection
        config.rpc.maxRequestPayloadSize = maximumRequestMessage
        config.connection.maxIdleTime = maximumIdleTime
        config.connection.keepalive.time = serverKeepaliveTime
        config.connection.keepalive.timeout = .seconds(20)
        // Accept the clients' pings (gRPC's default policy treats one more often than every 5 minutes as abuse).
        config.connection.keepalive.clientBehavior = .init(
            minPingIntervalWithoutCalls: keepaliveTime / 3, allowWithoutCalls: true)
        return config
    }

    static var client: HTTP2ClientTransport.Posix.Config {
        var config = HTTP2ClientTransport.Posix.Config.defaults
        config.http2.maxFrameSize = maximumFrameSize
        config.http2.targetWindowSize = windowSize
        config.connection.keepalive = .init(time: keepaliveTime, timeout: keepaliveTimeout, allowWithoutCalls: true)
        return config
    }
}

/// glibc's allocator tuned for a federation process, whose payload buffers (0.1-5 MB: sealed models, updates,
/// gradients, gRPC messages) come and go every round. By default glibc serves them with mmap/munmap (above a
/// dynamic threshold) and gives freed heap memory back eagerly, so every round pays page faults and zeroing
/// for fresh pages. Keeping them in the heap made `fedrec bench rounds` about 3-8% faster at N = 32 (9 paired
/// runs on a noisy 2-core machine), for more private memory: at N = 32, 4 MiB more per client process and up to
/// 47 MiB more in the coordinator with one process per client (freed buffers stay in its heaps). Called once,
/// before any work.
enum AllocatorTuning {
    /// Buffers below this are taken from the heap (glibc's largest allowed value on 64-bit).
    static let mmapThreshold: Int32 = 32 << 20
    /// Freed memory at the top of the heap is returned to the system only above this.
    static let trimThreshold: Int32 = 64 << 20

    /// Whether glibc took both settings (false: its defaults stay, which is only slower).
    static func apply() -> Bool {
        #if canImport(CFedRecAllocator) && os(Linux)
            return mallopt(M_MMAP_THRESHOLD, mmapThreshold) == 1 && mallopt(M_TRIM_THRESHOLD, trimThreshold) == 1
        #else
            return true
        #endif
    }
}

/// `--wire-precision` as a command-line value (`f32` or `bf16`).
enum WirePrecisionArgument: String, ExpressibleByArgument, CaseIterable {
    case f32, bf16
    var precision: WirePrecision { self == .f32 ? .float32 : .bfloat16 }
}

/// Help text of every `--wire-precision` option.
let wirePrecisionHelp: ArgumentHelp =
    "How model downloads and updates carry their values: f32 (exact) or bf16 (bfloat16, half the bytes; values move by at most 2^-8 of themselves)."
