import FedRecProtocol
import FedRecSecurity
import Foundation
import Synchronization
import Testing

@Suite("Poll proofs")
struct PollProofTests {
    /// Three clients' session keys as the client side (transmit) and the coordinator side (receive) hold them.
    static func sessions(_ count: Int) throws -> (client: [SymmetricKey], coordinator: [SymmetricKey]) {
        let coordinator = try Identity.generate(name: "coordinator")
        var client: [SymmetricKey] = []
        var server: [SymmetricKey] = []
        for index in 0..<count {
            let identity = try Identity.generate(name: "user-\(index)")
            client.append(
                try identity.keyAgreement.clientSessionKeys(serverPublicKey: coordinator.keyAgreement.publicKey)
                    .transmit)
            server.append(
                try coordinator.keyAgreement.serverSessionKeys(clientPublicKey: identity.keyAgreement.publicKey).receive
            )
        }
        return (client, server)
    }

    static let request = Fedrec_V1_RoundRequest.with {
        $0.clientIds = ["user-0", "user-1", "user-2"]
        $0.waitMilliseconds = 500
        $0.lastEpoch = 7
        $0.lastRound = 12
        $0.lastAttempt = 1
        $0.stamp = 1_800_000_000_000_000
    }

    @Test("every client's proof checks, under its own key only, and only for the request it was made for")
    func proofsBindTheRequest() throws {
        let (client, coordinator) = try Self.sessions(3)
        let poll = PollRequest(Self.request)
        let proofs = try poll.proofs(keys: client)
        #expect(proofs.count == 3 && proofs.allSatisfy { $0.count == PollProof.byteCount })
        #expect(try poll.firstUnproven(proofs, keys: coordinator) == nil)

        // Any changed field: no proof checks any more.
        var changes: [(String, (inout Fedrec_V1_RoundRequest) -> Void)] = [
            ("stamp", { $0.stamp += 1 }), ("wait", { $0.waitMilliseconds = 5_000 }), ("epoch", { $0.lastEpoch = 8 }),
            ("round", { $0.lastRound = 11 }), ("attempt", { $0.lastAttempt = 0 }),
            ("order", { $0.clientIds.swapAt(1, 2) }), ("id", { $0.clientIds[2] = "user-3" }),
        ]
        changes.append(("dropped id", { $0.clientIds.removeLast() }))
        for (what, change) in changes {
            var altered = Self.request
            change(&altered)
            let count = altered.clientIds.count
            #expect(
                try PollRequest(altered).firstUnproven(
                    Array(proofs.prefix(count)), keys: Array(coordinator.prefix(count)))
                    == 0, "\(what)")
        }
        // The same fields asked of GetStage are another request.
        let stage = PollRequest(
            Fedrec_V1_StageRequest.with {
                $0.clientIds = Self.request.clientIds
                $0.waitMilliseconds = 500
                $0.round = 7
                $0.attempt = 12
                $0.stage = 1
                $0.stamp = Self.request.stamp
            })
        #expect(try stage.firstUnproven(proofs, keys: coordinator) == 0)
        // So is the same request closing an upload stream (and the other way round), and refusals name which.
        let closing = PollRequest(Self.request, call: .nextRound)
        #expect(try closing.firstUnproven(proofs, keys: coordinator) == 0)
        #expect(try poll.firstUnproven(try closing.proofs(keys: client), keys: coordinator) == 0)
        let refusal = try #require(
            #expect(throws: ProtocolError.self) { try closing.verify(proofs, keys: coordinator.map { $0 }) })
        #expect(refusal.message == "SubmitUpdate's next-round request proof does not authenticate", "\(refusal)")

        // Proofs swapped between clients, a proof under another client's key, a cut or flipped proof: refused at
        // that index.
        #expect(try poll.firstUnproven([proofs[0], proofs[2], proofs[1]], keys: coordinator) == 1)
        let forged = try poll.proofs(keys: [client[0], client[0], client[2]])
        #expect(try poll.firstUnproven(forged, keys: coordinator) == 1)
        var flipped = proofs
        flipped[2][Int.random(in: 0..<PollProof.byteCount)] ^= 0x10
        #expect(try poll.firstUnproven(flipped, keys: coordinator) == 2)
        #expect(try poll.firstUnproven([proofs[0], proofs[1], proofs[2].dropLast()], keys: coordinator) == 2)
        #expect(try poll.firstUnproven([proofs[0], Data(), proofs[2]], keys: coordinator) == 1)
    }

    @Test("stamps strictly increase, also when the clock stands still or steps back")
    func stampsIncrease() {
        let readings = Mutex<[UInt64]>([100, 100, 90, 250, 250])
        let stamper = PollStamper(clock: { readings.withLock { $0.removeFirst() } })
        #expect((0..<5).map { _ in stamper.next() } == [100, 101, 102, 250, 251])
        let real = PollStamper()
        let now = PollStamper.wallMicroseconds()
        let stamps = (0..<1_000).map { _ in real.next() }
        #expect(zip(stamps, stamps.dropFirst()).allSatisfy { $0 < $1 })
        #expect(stamps[0] + 1_000_000 > now && stamps[0] < now + 1_000_000)
    }

    @Test("the book takes each poll once, only within the window and later than the prover's last, and forgets")
    func bookTakesEachPollOnce() {
        var book = PollBook()
        let now: UInt64 = 10_000_000_000
        let window = PollBook.window
        #expect(book.admit(prover: "a", call: .getRound, stamp: now - window, now: now) == nil)
        #expect(book.admit(prover: "a", call: .getRound, stamp: now - window, now: now) == .replayed)
        // Another prover, or the other call, with the same stamp is another poll.
        #expect(book.admit(prover: "b", call: .getRound, stamp: now - window, now: now) == nil)
        #expect(book.admit(prover: "a", call: .getStage, stamp: now - window, now: now) == nil)
        // Either side of the window, by a microsecond.
        #expect(
            book.admit(prover: "a", call: .getRound, stamp: now - window - 1, now: now)
                == .stale(microseconds: window + 1))
        #expect(book.admit(prover: "a", call: .getRound, stamp: now, now: now) == nil)
        #expect(book.admit(prover: "a", call: .getRound, stamp: now + window, now: now) == nil)
        #expect(
            book.admit(prover: "a", call: .getRound, stamp: now + window + 1, now: now)
                == .ahead(microseconds: window + 1))
        // Within the window but not later than the prover's last poll of that call: a replay (or reordering a
        // sequential process does not do).
        #expect(book.admit(prover: "a", call: .getRound, stamp: now + 1, now: now) == .replayed)
        #expect(book.admit(prover: "b", call: .getRound, stamp: now + 1, now: now) == nil)
        #expect(book.count == 3)
        // Two windows later the old polls are forgotten, and a replay of one is stale, not taken.
        let later = now + 3 * window + 1
        #expect(book.admit(prover: "c", call: .getRound, stamp: later, now: later) == nil)
        #expect(book.count == 1)
        #expect(book.admit(prover: "a", call: .getRound, stamp: now, now: later) == .stale(microseconds: later - now))
        // However fast an enrolled client polls with fresh stamps, it holds one entry.
        var clock = later
        for _ in 0..<10_000 {
            clock += 100
            #expect(book.admit(prover: "a", call: .getRound, stamp: clock, now: clock) == nil)
        }
        #expect(book.count == 2)
    }

    @Test("a poll stamped before the coordinator started is refused; a clock stepped back forgets nothing early")
    func bookOfARestartedCoordinator() {
        let started: UInt64 = 50_000_000_000
        var book = PollBook(notBefore: started)
        #expect(
            book.admit(prover: "a", call: .getRound, stamp: started - 1, now: started) == .beforeStart(microseconds: 1))
        #expect(book.admit(prover: "a", call: .getRound, stamp: started, now: started) == nil)
        // Pruning goes by the latest clock reading: after a reading two windows on, a clock stepped back to
        // `started` still remembers (and refuses) what is within the window of that reading.
        let window = PollBook.window
        let late = started + 2 * window
        #expect(book.admit(prover: "a", call: .getRound, stamp: late - window, now: late) == nil)
        #expect(book.admit(prover: "a", call: .getRound, stamp: late - window, now: late - window) == .replayed)
        #expect(book.admit(prover: "a", call: .getRound, stamp: late - window - 1, now: late - window) == .replayed)
    }
}
