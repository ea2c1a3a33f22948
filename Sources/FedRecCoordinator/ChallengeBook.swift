/// The enrolment challenges a coordinator has handed out and not yet seen used: each is good once, for
/// `lifetime` after it was issued.
///
/// Bounded and cheap under a flood of unauthenticated `GetChallenge` calls: at most `capacity` challenges issued
/// within the lifetime are remembered (a challenge issued beyond that is refused when presented), and expired
/// ones leave in issue order, so issuing and consuming are amortised O(1) rather than a scan of every entry.
struct ChallengeBook: Sendable {
    let capacity: Int
    let lifetime: Duration
    /// Unused challenges by nonce, with the time they were issued.
    private var unused: [[UInt8]: Duration] = [:]
    /// Every remembered challenge in issue order, used or not, until it expires; `expired` entries before
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

    /// Remembers `nonce`, issued at `now`; false when the book is full (the challenge will be refused).
    mutating func issue(_ nonce: [UInt8], now: Duration) -> Bool {
        expire(now: now)
        guard issued.count - head < capacity else { return false }
        unused[nonce] = now
        issued.append((nonce, now))
        return true
    }

    /// Uses up `nonce`: true when it was issued, is unused and has not expired.
    mutating func consume(_ nonce: [UInt8], now: Duration) -> Bool {
        expire(now: now)
        guard let at = unused.removeValue(forKey: nonce) else { return false }
        return now - at < lifetime
    }

    private mutating func expire(now: Duration) {
        while head < issued.count, now - issued[head].at >= lifetime {
            if unused[issued[head].nonce] == issued[head].at { unused[issued[head].nonce] = nil }
            head += 1
        }
        if head > 1_024, head * 2 > issued.count {
            issued.removeFirst(head)
            head = 0
        }
    }
}
