/// The enrolment challenges a coordinator has handed out and not yet seen used: each is good once, for
/// `lifetime` after it was issued.
///
/// Bounded and cheap under a flood of unauthenticated `GetChallenge` calls: at most `capacity` challenges are
/// remembered, expired ones leave in issue order, and when the book is full the oldest gives way to the new one,
/// so issuing and consuming are amortised O(1) rather than a scan of every entry. A flood therefore cannot lock
/// genuine clients out: a challenge stays good until `capacity` newer ones have been issued (about 10 s at
/// 10,000 calls a second with the default), far longer than a client takes to answer it.
struct ChallengeBook: Sendable {
    let capacity: Int
    let lifetime: Duration
    /// Unused challenges by nonce, with the time they were issued.
    private var unused: [[UInt8]: Duration] = [:]
    /// Every remembered challenge in issue order, used or not, until it expires or gives way; entries before
    /// `head` are gone (compacted in batches).
    private var issued: [(nonce: [UInt8], at: Duration)] = []
    private var head = 0

    init(capacity: Int = 100_000, lifetime: Duration = .seconds(120)) {
        precondition(capacity > 0 && lifetime > .zero, "a challenge book holds at least one challenge for a while")
        self.capacity = capacity
        self.lifetime = lifetime
    }

    /// Challenges remembered and not yet used or expired (as of the last call).
    var count: Int { unused.count }

    /// Remembers `nonce`, issued at `now`, forgetting the oldest challenge if the book is full.
    mutating func issue(_ nonce: [UInt8], now: Duration) {
        expire(now: now)
        if issued.count - head >= capacity { forgetOldest() }
        unused[nonce] = now
        issued.append((nonce, now))
    }

    /// Uses up `nonce`: true when it was issued, is unused and has not expired.
    mutating func consume(_ nonce: [UInt8], now: Duration) -> Bool {
        expire(now: now)
        guard let at = unused.removeValue(forKey: nonce) else { return false }
        return now - at < lifetime
    }

    private mutating func expire(now: Duration) {
        while head < issued.count, now - issued[head].at >= lifetime { forgetOldest() }
    }

    private mutating func forgetOldest() {
        let (nonce, at) = issued[head]
        if unused[nonce] == at { unused[nonce] = nil }
        head += 1
        if head > 1_024, head * 2 > issued.count {
            issued.removeFirst(head)
            head = 0
        }
    }
}
