import Testing

@testable import FedRecCoordinator

@Suite("Enrolment challenge book")
struct ChallengeBookTests {
    func nonce(_ i: Int) -> [UInt8] { withUnsafeBytes(of: UInt64(i).littleEndian, Array.init) }

    @Test("a challenge is good once, until its lifetime ends")
    func onceWithinTheLifetime() {
        var book = ChallengeBook(capacity: 10, lifetime: .seconds(120))
        let issued = [book.issue(nonce(1), now: .seconds(0)), book.issue(nonce(2), now: .seconds(0))]
        #expect(issued == [true, true])
        let first = book.consume(nonce(1), now: .seconds(119))
        let again = book.consume(nonce(1), now: .seconds(119))
        let unknown = book.consume(nonce(3), now: .seconds(1))
        let expired = book.consume(nonce(2), now: .seconds(120))
        #expect(first && !again && !unknown && !expired)
        #expect(book.count == 0)
    }

    @Test("a flood fills the book to its capacity; expired challenges make room again")
    func boundedUnderAFlood() {
        var book = ChallengeBook(capacity: 1_000, lifetime: .seconds(120))
        var remembered = 0
        for i in 0..<50_000 where book.issue(nonce(i), now: .milliseconds(i)) { remembered += 1 }
        #expect(remembered == 1_000 && book.count == 1_000)
        let lastRemembered = book.consume(nonce(999), now: .seconds(60))
        let beyondCapacity = book.consume(nonce(1_000), now: .seconds(60))
        #expect(lastRemembered && !beyondCapacity)
        // Used challenges keep their place until they expire: the book is still full.
        let whileFull = book.issue(nonce(60_000), now: .seconds(60))
        #expect(!whileFull)
        // At 120.5 s the 501 issued at 0 ... 0.5 s have expired: 501 new ones fit, and no more.
        let later = Duration.seconds(120) + .milliseconds(500)
        let fitted = (0..<600).filter { book.issue(nonce(100_000 + $0), now: later) }
        #expect(fitted == Array(0...500))
        let unexpired = book.consume(nonce(998), now: later)
        #expect(unexpired, "challenges not yet expired stay good")
    }

    @Test("expiry keeps working across many lifetimes (compaction)")
    func manyLifetimes() {
        var book = ChallengeBook(capacity: 100, lifetime: .seconds(1))
        var refused = 0
        for i in 0..<20_000 {
            let now = Duration.milliseconds(i * 10)
            if !book.issue(nonce(i), now: now) { refused += 1 }
            if i >= 50, !book.consume(nonce(i - 50), now: now) { refused += 1 }
        }
        #expect(refused == 0 && book.count == 50)
    }
}
