import Testing

@testable import FedRecCoordinator

@Suite("Enrolment challenge book")
struct ChallengeBookTests {
    func nonce(_ i: Int) -> [UInt8] { withUnsafeBytes(of: UInt64(i).littleEndian, Array.init) }

    @Test("a challenge is good once, until its lifetime ends")
    func onceWithinTheLifetime() {
        var book = ChallengeBook(capacity: 10, lifetime: .seconds(120))
        book.issue(nonce(1), now: .seconds(0))
        book.issue(nonce(2), now: .seconds(0))
        let first = book.consume(nonce(1), now: .seconds(119))
        let again = book.consume(nonce(1), now: .seconds(119))
        let unknown = book.consume(nonce(3), now: .seconds(1))
        let expired = book.consume(nonce(2), now: .seconds(120))
        #expect(first && !again && !unknown && !expired)
        #expect(book.count == 0)
    }

    @Test("under a flood the book stays at its capacity, and the newest challenges stay good")
    func boundedUnderAFlood() {
        var book = ChallengeBook(capacity: 1_000, lifetime: .seconds(120))
        for i in 0..<50_000 {
            book.issue(nonce(i), now: .milliseconds(i))
            #expect(book.count == min(i + 1, 1_000))
        }
        // A genuine client's challenge, issued amid the flood, is good until 1,000 newer ones have been issued.
        let newest = book.consume(nonce(49_999), now: .seconds(50))
        let oldestKept = book.consume(nonce(49_000), now: .seconds(50))
        let givenWay = book.consume(nonce(48_999), now: .seconds(50))
        #expect(newest && oldestKept && !givenWay)
        // A used challenge keeps its place until it gives way or expires: the used 49,000 gives way to 60,000,
        // then the unused 49,001 to 60,001.
        #expect(book.count == 998)
        book.issue(nonce(60_000), now: .seconds(50))
        #expect(book.count == 999)
        book.issue(nonce(60_001), now: .seconds(50))
        #expect(book.count == 999)
        let gone = book.consume(nonce(49_001), now: .seconds(50))
        let stillGood = book.consume(nonce(49_002), now: .seconds(50))
        #expect(!gone && stillGood)
    }

    @Test("expiry keeps working across many lifetimes (compaction)")
    func manyLifetimes() {
        var book = ChallengeBook(capacity: 100, lifetime: .seconds(1))
        var refused = 0
        for i in 0..<20_000 {
            let now = Duration.milliseconds(i * 10)
            book.issue(nonce(i), now: now)
            if i >= 50, !book.consume(nonce(i - 50), now: now) { refused += 1 }
        }
        #expect(refused == 0 && book.count == 50)
    }
}
