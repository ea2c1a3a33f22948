import Foundation
import Testing

@Suite("fedrec coordinator: connections")
struct CoordinatorConnectionTests {
    /// What a fresh TCP connection to the coordinator gets: served (its HTTP/2 settings arrive) or closed.
    enum Outcome: Equatable {
        case served
        case closed
    }

    /// Connects, sends the HTTP/2 client preface with empty settings, and reads the first answer (2 s at most).
    static func open(port: UInt16) throws -> (socket: Int32, outcome: Outcome) {
        let socket = try #require(RecallCLITests.connectLoopback(port: port))
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + [0, 0, 0, 4, 0, 0, 0, 0, 0]
        _ = send(socket, preface, preface.count, Int32(MSG_NOSIGNAL))
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = recv(socket, &buffer, buffer.count, 0)
        if count > 0 { return (socket, .served) }
        // Closed means closed by the coordinator (end of stream or a reset), not a read that timed out.
        try #require(count == 0 || errno == ECONNRESET, "neither served nor closed (errno \(errno))")
        return (socket, .closed)
    }

    /// A small imported data set and keys for a coordinator and one client (`user-1`, its allow-list being
    /// `keys/user-1.pub`), in `folder`.
    static func coordinatorInputs(in folder: URL) throws -> (dataset: String, keys: String) {
        let source = try CLI.writeSyntheticInteractions(to: folder)
        let dataset = folder.appendingPathComponent("dataset").path
        let keys = folder.appendingPathComponent("keys").path
        try #require(try CLI.run(["data", "import", source.path, "--format", "generic", "--out", dataset]).status == 0)
        for name in ["coordinator", "user-1"] {
            try #require(try CLI.run(["keys", "generate", "--out", keys, "--name", name]).status == 0)
        }
        return (dataset, keys)
    }

    /// A TCP socket bound to a free loopback port (listening when `listening`), and that port.
    static func loopbackSocket(listening: Bool) throws -> (socket: Int32, port: UInt16) {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, length) == 0 && (!listening || listen(descriptor, 4) == 0)
                    && getsockname(descriptor, $0, &length) == 0
            }
        }
        if !bound { close(descriptor) }
        try #require(bound)
        return (descriptor, UInt16(bigEndian: address.sin_port))
    }

    @Test("a coordinator fails at once, announcing no address, when its port is taken or its allow-list cannot fill a round")
    func portInUse() throws {
        let folder = try CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let (dataset, keys) = try Self.coordinatorInputs(in: folder)
        // Another process's listener on a loopback port.
        let (holder, port) = try Self.loopbackSocket(listening: true)
        defer { close(holder) }
        let result = try CLI.run([
            "coordinator", "--dataset", dataset, "--keys", keys, "--allow-list", keys + "/user-1.pub", "--state",
            folder.appendingPathComponent("state").path, "--address", "127.0.0.1:\(port)",
        ])
        // A setup failure (exit 7) in words, not the transport's error chain.
        #expect(result.status == 7)
        #expect(!result.output.contains("listening on"), "\(result.combined)")
        #expect(
            result.combined.contains("cannot listen on 127.0.0.1:\(port) (--address): the port is in use"),
            "\(result.combined)")
        #expect(!result.combined.contains("transportError"), "\(result.combined)")

        // An allow-list that lists nobody (or fewer than --min-clients) is refused (exit 7), not waited on forever.
        let empty = folder.appendingPathComponent("empty-allow-list").path
        try "# nobody yet\n".write(toFile: empty, atomically: true, encoding: .utf8)
        for (list, extra, message) in [
            (empty, [String](), "lists no client"), (keys + "/user-1.pub", ["--min-clients", "2"], "--min-clients 2 exceeds"),
        ] {
            let refused = try CLI.run(
                [
                    "coordinator", "--dataset", dataset, "--keys", keys, "--allow-list", list, "--state",
                    folder.appendingPathComponent("state-\(extra.count)").path, "--address", "127.0.0.1:0",
                ] + extra)
            #expect(refused.status == 7 && refused.combined.contains(message), "\(refused.combined)")
        }
    }

    @Test("a client whose coordinator never answers exits 5 saying where it looked and for how long")
    func unreachableCoordinatorIsNamed() throws {
        let folder = try CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let (dataset, keys) = try Self.coordinatorInputs(in: folder)
        try #require(try CLI.run(["keys", "generate", "--out", keys, "--name", "user-u1"]).status == 0)
        // A port nothing listens on: bound, then closed.
        let (probe, port) = try Self.loopbackSocket(listening: false)
        close(probe)
        let result = try CLI.run([
            "client", "--coordinator", "127.0.0.1:\(port)", "--dataset", dataset, "--keys", keys, "--users", "u1",
            "--connect-timeout", "0.5",
        ])
        #expect(result.status == 5, "\(result.combined)")
        #expect(
            result.combined.contains(
                "no coordinator answered at 127.0.0.1:\(port) for 0.5 s (--connect-timeout): is it running"),
            "\(result.combined)")
    }

    @Test("a connection beyond --max-connections is closed at once and logged; a freed place is taken again")
    func connectionLimit() throws {
        let folder = try CLI.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let (dataset, keys) = try Self.coordinatorInputs(in: folder)
        let standardError = Pipe()
        let (coordinator, first) = try RecallCLITests.startServer(
            [
                "coordinator", "--dataset", dataset, "--keys", keys, "--allow-list", keys + "/user-1.pub", "--state",
                folder.appendingPathComponent("state").path, "--address", "127.0.0.1:0", "--max-connections", "2",
            ], standardError: standardError)
        let port = try #require(
            first.split(separator: ":").last.flatMap { UInt16($0.trimmingCharacters(in: .whitespacesAndNewlines)) })

        let a = try Self.open(port: port)
        let b = try Self.open(port: port)
        let c = try Self.open(port: port)
        #expect([a.outcome, b.outcome, c.outcome] == [.served, .served, .closed])
        close(a.socket)
        // The place is freed when the coordinator sees the close.
        var d = try Self.open(port: port)
        for _ in 0..<20 where d.outcome == .closed {
            close(d.socket)
            usleep(100_000)
            d = try Self.open(port: port)
        }
        #expect(d.outcome == .served)
        for socket in [b.socket, c.socket, d.socket] { close(socket) }

        kill(coordinator.processIdentifier, SIGINT)
        coordinator.waitUntilExit()
        #expect(coordinator.terminationStatus == 10)  // stopped by a signal while waiting for clients
        let log = String(decoding: standardError.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(log.contains("refused a connection: 2 already open (--max-connections)"), "\(log)")
    }
}
