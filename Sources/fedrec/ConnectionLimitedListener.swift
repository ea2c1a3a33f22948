import FedRecCoordinator
import Foundation
import GRPCCore
import GRPCNIOTransportCore
import GRPCNIOTransportHTTP2
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The coordinator's listening socket, plaintext HTTP/2 over TCP as `HTTP2ServerTransport.Posix` makes it, with a
/// cap on the connections open at once (`ConnectionGate`): peers cannot use up the process's file descriptors,
/// which its checkpoints need, or pile up per-connection memory without bound.
struct ConnectionLimitedListener: HTTP2ServerTransport.ListenerFactory {
    let host: String
    let port: Int
    let gate: ConnectionGate

    var eventLoopGroup: any EventLoopGroup { MultiThreadedEventLoopGroup.singleton }

    func makeListeningChannel(
        listenerConfigurator: HTTP2ServerTransport.ListenerConfigurator,
        connectionConfigurator: HTTP2ServerTransport.ConnectionConfigurator
    ) async throws -> NIOAsyncChannel<HTTP2ServerTransport.ConnectionConfigurator.ConnectionChannel, Never> {
        let gate = self.gate
        do {
            return try await bind(
                gate: gate, listenerConfigurator: listenerConfigurator,
                connectionConfigurator: connectionConfigurator)
        } catch {
            throw ListenFailure(host: host, port: port, option: "--address", underlying: error)
        }
    }

    private func bind(
        gate: ConnectionGate, listenerConfigurator: HTTP2ServerTransport.ListenerConfigurator,
        connectionConfigurator: HTTP2ServerTransport.ConnectionConfigurator
    ) async throws -> NIOAsyncChannel<HTTP2ServerTransport.ConnectionConfigurator.ConnectionChannel, Never> {
        try await ServerBootstrap(group: eventLoopGroup)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { listenerConfigurator.configure(channel: $0) }
            .bind(host: host, port: port) { channel in
                guard gate.admit(channel) else {
                    // A failed initializer drops the connection from the accept stream (which goes on) but
                    // leaves its channel open: close it here.
                    channel.close(promise: nil)
                    return channel.eventLoop.makeFailedFuture(ConnectionGate.Full())
                }
                // A connection whose set-up fails is dropped from the accept stream too: close it (and so free
                // its place) rather than leave it open.
                return connectionConfigurator.configure(channel: channel, tls: .none).flatMapError { error in
                    channel.close(promise: nil)
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
    }

    /// The coordinator's gRPC transport: this listener with `config` (`TransportTuning.server`).
    static func transport(host: String, port: Int, gate: ConnectionGate, config: HTTP2ServerTransport.Posix.Config)
        -> HTTP2ServerTransport.Custom<ConnectionLimitedListener>
    {
        HTTP2ServerTransport.Custom(
            listenerFactory: ConnectionLimitedListener(host: host, port: port, gate: gate),
            config: .init(
                compression: config.compression, connection: config.connection, http2: config.http2, rpc: config.rpc,
                channelDebuggingCallbacks: config.channelDebuggingCallbacks))
    }
}

/// A server (the coordinator, `recall --serve`) could not listen where it was told (a port another process
/// holds, an address not on this host, a privileged port): said in those words, naming the option, not as the
/// transport's error chain.
struct ListenFailure: Error, CustomStringConvertible {
    let host: String
    let port: Int
    /// The option(s) that chose the address.
    let option: String
    let underlying: any Error

    var description: String {
        let reason: String
        if let io = underlying as? IOError {
            switch io.errnoCode {
            case EADDRINUSE: reason = "the port is in use (another process listens on it; port 0 picks a free one)"
            case EADDRNOTAVAIL: reason = "the address is not one of this host's"
            case EACCES: reason = "permission denied (ports below 1024 need privileges)"
            default: reason = String(cString: strerror(io.errnoCode))
            }
        } else {
            reason = "\(underlying)"
        }
        return "cannot listen on \(host):\(port) (\(option)): \(reason)"
    }

    /// The `ListenFailure` in `error` or in the chain of causes the transport wrapped it in, if any.
    static func find(in error: any Error) -> ListenFailure? {
        var current: (any Error)? = error
        for _ in 0..<8 {
            switch current {
            case let failure as ListenFailure: return failure
            case let runtime as RuntimeError: current = runtime.cause
            case let rpc as RPCError: current = rpc.cause
            default: return nil
            }
        }
        return nil
    }
}

/// Counts the connections open at once and refuses one beyond `limit`, logging the refusals (at most 100 lines
/// per 10 s, then one line counting the rest, as for refused messages). A connection counts from its accept to
/// its close.
final class ConnectionGate: Sendable {
    /// Descriptors kept, beyond those already open when the limit is set (event loops, logs, libraries), for
    /// the files the process opens later (checkpoints, state).
    static let reservedDescriptors = 64

    let limit: Int
    let logger: Logger
    private struct State {
        var open = 0
        var budget = RefusalLogBudget()
    }
    private let state = Mutex(State())
    private let started = ContinuousClock.now

    struct Full: Error {}

    init(limit: Int, logger: Logger) {
        precondition(limit > 0, "the connection limit must be positive")
        self.limit = limit
        self.logger = logger
    }

    /// `requested`, lowered so that the connections, the descriptors open now and `reservedDescriptors` fit in
    /// the process's descriptor limit (`RLIMIT_NOFILE`, soft); the event loops are started first, since they
    /// hold descriptors of their own.
    static func effectiveLimit(requested: Int) -> Int {
        _ = MultiThreadedEventLoopGroup.singleton.next()  // its loops (and their descriptors) exist from here
        var limits = rlimit()
        #if canImport(Glibc)
            let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
            let resource = RLIMIT_NOFILE
        #endif
        guard getrlimit(resource, &limits) == 0, limits.rlim_cur != rlim_t.max else { return requested }
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        let available = Int(clamping: limits.rlim_cur) - open - reservedDescriptors
        return max(1, min(requested, available))
    }

    /// Counts `channel` in (until it closes) when there is room; otherwise counts the refusal and logs it.
    func admit(_ channel: any Channel) -> Bool {
        let now = ContinuousClock.now - started
        let (admitted, log, leftOut) = state.withLock { s -> (Bool, Bool, Int) in
            if s.open < limit {
                s.open += 1
                return (true, false, 0)
            }
            let (log, leftOut) = s.budget.admit(at: now)
            return (false, log, leftOut)
        }
        if admitted {
            channel.closeFuture.whenComplete { _ in self.state.withLock { $0.open -= 1 } }
            return true
        }
        if leftOut > 0 {
            logger.warning(
                "\(leftOut) more refused connection(s) in the previous \(RefusalLogBudget.window) not logged")
        }
        if log {
            logger.warning(
                "refused a connection: \(limit) already open (--max-connections)",
                metadata: ["peer": "\(channel.remoteAddress.map { "\($0)" } ?? "-")"])
        }
        return false
    }
}
