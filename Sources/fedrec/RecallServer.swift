import FedRecRecall
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// Answers the HTTP endpoint's requests (pure: no networking, so tests can call it directly).
///
/// `POST /recall` with a JSON body `{"history_ids": [...]}` or `{"history": ["title", ...]}`, optionally
/// `"k"`, `"exclude_ids"`, `"include_seen"`; answers `{"state": ..., "items": [{rank, id, title, genres, score,
/// channel, channels}]}`. `GET /health` answers `{"status": "ok", "items": N}`. Errors are JSON
/// `{"error": "..."}` with 400 (malformed, or a field not listed here), 404 (unknown path), 405 (wrong
/// method), 413 (too large), 422 (unknown items, K <= 0, no channel).
struct RecallHTTPHandler: Sendable {
    let recommender: Recommender
    let configuration: RecallConfiguration
    /// Items no answer contains (`recall --exclude`), besides each request's `exclude_ids`.
    var excluded: [Int32] = []

    struct Request: Decodable {
        var history_ids: [String]?
        var history: [String]?
        var k: Int?
        var exclude_ids: [String]?
        var include_seen: Bool?
    }

    struct Response: Encodable {
        var state: String
        var items: [RecallSetup.Recommendation]
    }

    /// The first known field of `object` whose value has the wrong type, described, else nil (each field is
    /// decoded alone, as `Request` would decode it; null is a missing field).
    static func typeProblem(in object: [String: Any]) -> String? {
        func fits<T: Decodable>(_ key: String, _ type: T.Type) -> Bool {
            guard let value = object[key], !(value is NSNull) else { return true }
            guard let data = try? JSONSerialization.data(withJSONObject: [key: value]) else { return false }
            return (try? JSONDecoder().decode([String: T].self, from: data)) != nil
        }
        for key in ["history_ids", "history", "exclude_ids"] where !fits(key, [String].self) {
            return "field '\(key)': expected a list of strings"
        }
        if !fits("k", Int.self) { return "field 'k': expected a whole number, got \(object["k"]!)" }
        if !fits("include_seen", Bool.self) {
            return "field 'include_seen': expected true or false, got \(object["include_seen"]!)"
        }
        return nil
    }

    func respond(method: HTTPMethod, path: String, body: [UInt8]) -> (HTTPResponseStatus, String) {
        func fail(_ status: HTTPResponseStatus, _ message: String) -> (HTTPResponseStatus, String) {
            (status, RecallSetup.json(["error": message]))
        }
        let route = path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? path
        switch route {
        case "/health":
            guard method == .GET else { return fail(.methodNotAllowed, "use GET for /health") }
            return (.ok, "{\"items\":\(recommender.catalogue.count),\"status\":\"ok\"}")
        case "/recall":
            guard method == .POST else { return fail(.methodNotAllowed, "use POST for /recall") }
        default:
            return fail(.notFound, "no such endpoint '\(route)'; use POST /recall or GET /health")
        }
        let request: Request
        do {
            request = try JSONDecoder().decode(Request.self, from: Data(body))
        } catch {
            var detail = Self.describe(error)
            // One JSONSerialization parse says both: for valid JSON with a field of the wrong type, which field
            // (Foundation on Linux may not); for text that is not JSON, where it stops being JSON (JSONDecoder on
            // Linux does not say).
            do {
                if let object = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
                    let problem = Self.typeProblem(in: object)
                {
                    detail = problem
                }
            } catch {
                if let position = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String {
                    detail += " (\(position))"
                }
            }
            return fail(.badRequest, "the body is not a JSON recall request: \(detail)")
        }
        // A misspelt field would otherwise be ignored and answered as a cold user.
        if let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] {
            let unknown = object.keys.filter { !Self.fields.contains($0) }.sorted()
            if let first = unknown.first {
                let known = Self.fields.joined(separator: ", ")
                return fail(.badRequest, "unknown field '\(first)' in the recall request; the fields are \(known)")
            }
        }
        if request.history != nil && request.history_ids != nil {
            return fail(.badRequest, "give 'history' (titles) or 'history_ids', not both")
        }
        let catalogue = recommender.catalogue
        var configuration = configuration
        if let k = request.k {
            guard k > 0 else { return fail(.unprocessableEntity, "k must be positive, got \(k)") }
            // A bound on one answer's size (the CLI, answering its own user, takes any k).
            guard k <= 10_000 else { return fail(.unprocessableEntity, "k must be at most 10000, got \(k)") }
            configuration.k = k
        }
        if let includeSeen = request.include_seen { configuration.excludeSeen = !includeSeen }
        do {
            let history =
                if let titles = request.history { try catalogue.resolve(titles: titles) } else {
                    try catalogue.resolve(ids: (request.history_ids ?? []).map(Self.trimmed))
                }
            let exclude =
                excluded + (try catalogue.resolve(ids: (request.exclude_ids ?? []).map(Self.trimmed), role: "excluded item"))
            let result = try recommender.recommend(
                [RecallRequest(history: history, exclude: exclude)], configuration: configuration)[0]
            return (
                .ok,
                RecallSetup.json(
                    Response(state: result.state.rawValue, items: RecallSetup.rows(result, catalogue: catalogue)))
            )
        } catch {
            return failure(error)
        }
    }

    private func failure(_ error: RecallError) -> (HTTPResponseStatus, String) {
        struct Body: Encodable {
            var error: String
            var candidates: [String]
        }
        return (.unprocessableEntity, RecallSetup.json(Body(error: error.message, candidates: error.candidates)))
    }

    /// An id as the CLI reads it (`--history-ids " 1"` is item 1): surrounding whitespace is not part of it.
    static func trimmed(_ id: String) -> String { id.trimmingCharacters(in: .whitespaces) }

    /// The fields a recall request may have.
    static let fields = ["history_ids", "history", "k", "exclude_ids", "include_seen"]

    private static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context),
            DecodingError.keyNotFound(_, let context), DecodingError.dataCorrupted(let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            // The parser's own words (what and where) when the text is not JSON at all.
            let detail =
                context.underlyingError.map { "\(context.debugDescription) (\($0))" } ?? context.debugDescription
            return path.isEmpty ? detail : "\(path): \(detail)"
        default:
            return "\(error)"
        }
    }
}

/// A small HTTP/1.1 JSON server on SwiftNIO: one request per connection (answered with `Connection: close`),
/// bodies over `maxBodyBytes` refused with 413 as soon as the declared length or the bytes received pass it.
/// A connection is closed `connectionDeadline` after it was accepted, answered or not, and `headDeadline` after
/// it if no request head came, so slow, stalled or idle clients cannot hold the server (or its shutdown) for long. `run` owns every child task (structured
/// concurrency) and returns after SIGINT or SIGTERM once in-flight requests are answered; a second signal exits
/// at once with 128 + its number.
struct RecallHTTPServer {
    let host: String
    let port: Int
    let maxBodyBytes: Int
    let handler: RecallHTTPHandler
    var connectionDeadline: TimeAmount = .seconds(30)
    /// A connection whose request head has not arrived this long after it was accepted is closed: idle peers cannot
    /// hold the `maximumConnections` places for the whole `connectionDeadline`.
    var headDeadline: TimeAmount = .seconds(5)
    /// Connections served at once; one accepted beyond it is closed at once (each holds a file descriptor).
    var maximumConnections = 128

    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    func run(onListening: (String) -> Void) async throws {
        let connections = Connections()
        // Before the address is announced: a signal sent as soon as it is read must not be lost.
        let signals = Self.terminationSignals()
        let server: NIOAsyncChannel<Connection, Never>
        do {
            server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture { try connections.wrap(channel) }
                }
        } catch {
            throw ListenFailure(host: host, port: port, option: "--host, --port", underlying: error)
        }
        let address = server.channel.localAddress
        onListening("\(address?.ipAddress ?? host):\(address?.port ?? port)")
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                var received = signals.makeAsyncIterator()
                guard await received.next() != nil else { return }
                // Stop accepting; the accept loop below ends and waits for in-flight connections.
                try? await server.channel.close()
                // A second signal stops at once instead of waiting up to `connectionDeadline` for open
                // connections (the server keeps no state to save).
                if let second = await received.next() {
                    writeUnchecked(STDERR_FILENO, "second signal: stopping without waiting for open connections\n")
                    // _exit: exit(3) would run library destructors while other threads may still be answering.
                    _exit(128 + second)
                }
            }
            try await server.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { group in
                    // Connections accepted as the server stopped, which never reached the loop below (also
                    // when the accept stream fails).
                    defer {
                        for connection in connections.stop() {
                            group.addTask { try? await connection.executeThenClose { _, _ in } }
                        }
                    }
                    for try await connection in inbound {
                        guard connections.take(connection, limit: maximumConnections) else {
                            try? await connection.executeThenClose { _, _ in }
                            continue
                        }
                        group.addTask {
                            await self.serve(connection)
                            connections.finished()
                        }
                    }
                }
            }
            group.cancelAll()
        }
    }

    /// One connection: read a request (counting body bytes), answer, close; closed at the deadline regardless.
    func serve(_ connection: Connection) async {
        let channel = connection.channel
        let deadline = channel.eventLoop.scheduleTask(in: connectionDeadline) { channel.close(promise: nil) }
        let headTimer = channel.eventLoop.scheduleTask(in: headDeadline) { channel.close(promise: nil) }
        defer {
            deadline.cancel()
            headTimer.cancel()
        }
        try? await connection.executeThenClose { inbound, outbound in
            func answer(_ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ text: String) async throws {
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: "application/json")
                headers.add(name: "Content-Length", value: String(text.utf8.count + 1))
                headers.add(name: "Connection", value: "close")
                let response = HTTPResponseHead(version: head.version, status: status, headers: headers)
                try await outbound.write(.head(response))
                try await outbound.write(.body(.byteBuffer(ByteBuffer(string: text + "\n"))))
                try await outbound.write(.end(nil))
            }
            let tooLarge = RecallSetup.json(["error": "the request body exceeds \(maxBodyBytes) bytes"])
            var head: HTTPRequestHead?
            var body: [UInt8] = []
            /// Reads the request and answers it (or refuses it early).
            func read() async throws {
                for try await part in inbound {
                    switch part {
                    case .head(let value):
                        headTimer.cancel()
                        head = value
                        // Refused at once, without reading a body that may never end.
                        if let length = value.headers.first(name: "content-length").flatMap(Int.init),
                            length > maxBodyBytes
                        {
                            try await answer(value, .payloadTooLarge, tooLarge)
                            return
                        }
                    case .body(let buffer):
                        guard let head else { return }
                        if body.count + buffer.readableBytes > maxBodyBytes {
                            try await answer(head, .payloadTooLarge, tooLarge)
                            return
                        }
                        body.append(contentsOf: buffer.readableBytesView)
                    case .end:
                        guard let head else { return }
                        let (status, text) = handler.respond(method: head.method, path: head.uri, body: body)
                        try await answer(head, status, text)
                        return
                    }
                }
            }
            do {
                try await read()
            } catch let error as HTTPParserError {
                let message = RecallSetup.json(["error": "malformed HTTP request: \(error)"])
                try await answer(
                    head ?? HTTPRequestHead(version: .http1_1, method: .GET, uri: "/"), .badRequest, message)
            }
        }
    }

    /// SIGINT and SIGTERM as an async sequence (their default action is disabled while serving).
    static func terminationSignals() -> AsyncStream<Int32> {
        AsyncStream { continuation in
            var sources: [any DispatchSourceSignal] = []
            for signalNumber in [SIGINT, SIGTERM] {
                signal(signalNumber, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
                // Signals that arrive before the handler runs are merged into one event: yield each.
                source.setEventHandler {
                    for _ in 0..<max(1, source.data) { continuation.yield(signalNumber) }
                }
                source.resume()
                sources.append(source)
            }
            let held = SignalSources(sources: sources)
            continuation.onTermination = { _ in held.cancel() }
        }
    }
}

/// Every connection from the child-channel initializer to its end. NIO traps on a connection wrapped for async
/// use that is dropped without `executeThenClose`, and one accepted just as the server stops can be wrapped
/// without ever reaching the accept loop (its stream has ended): the registry holds each wrapped connection
/// until the loop takes it, hands over the ones left when the loop ends, and wraps none after that (closing the
/// channel itself, which NIO leaves open when an initializer fails).
private final class Connections: Sendable {
    private struct State {
        var stopping = false
        var waiting: [ObjectIdentifier: RecallHTTPServer.Connection] = [:]
        var served = 0
    }
    private let state = Mutex(State())

    struct Stopping: Error {}

    /// Sets up a new child channel (on its event loop) and holds its wrapper for the accept loop. Without
    /// NIO's error handler, whose 400 has an empty body: `serve` answers a request the parser refuses with a
    /// JSON error saying why.
    func wrap(_ channel: any Channel) throws -> RecallHTTPServer.Connection {
        try state.withLock { s in
            guard !s.stopping else {
                // NIO leaves a child whose initializer failed open: close it here.
                channel.close(promise: nil)
                throw Stopping()
            }
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: false)
            let connection = try RecallHTTPServer.Connection(wrappingChannelSynchronously: channel)
            s.waiting[ObjectIdentifier(channel)] = connection
            return connection
        }
    }

    /// The accept loop takes `connection`: true if it may be served, that is if fewer than `limit` are.
    func take(_ connection: RecallHTTPServer.Connection, limit: Int) -> Bool {
        state.withLock { s in
            s.waiting[ObjectIdentifier(connection.channel)] = nil
            guard s.served < limit else { return false }
            s.served += 1
            return true
        }
    }

    /// A served connection has ended.
    func finished() { state.withLock { $0.served -= 1 } }

    /// Wraps no more connections; returns the ones wrapped but never taken.
    func stop() -> [RecallHTTPServer.Connection] {
        state.withLock { s in
            s.stopping = true
            defer { s.waiting = [:] }
            return Array(s.waiting.values)
        }
    }
}

/// Keeps the signal sources alive until the stream ends (DispatchSource is thread-safe).
private final class SignalSources: @unchecked Sendable {
    let sources: [any DispatchSourceSignal]
    init(sources: [any DispatchSourceSignal]) { self.sources = sources }
    func cancel() { for source in sources { source.cancel() } }
}
