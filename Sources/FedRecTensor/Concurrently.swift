import Dispatch

/// Runs `first` and `second` at the same time (on two threads when the machine has them) and returns once both
/// have. The two must touch disjoint state: that is what lets them mutate the caller's variables without
/// synchronisation (the compiler checks only that no variable is captured by both).
public func concurrently(_ first: () -> Void, _ second: () -> Void) {
    withoutActuallyEscaping(first) { first in
        withoutActuallyEscaping(second) { second in
            let pair = ClosurePair(first: first, second: second)
            DispatchQueue.concurrentPerform(iterations: 2) { part in
                if part == 0 { pair.first() } else { pair.second() }
            }
        }
    }
}

/// The closures of one `concurrently` call, handed to Dispatch's worker threads.
private struct ClosurePair: @unchecked Sendable {
    let first: () -> Void
    let second: () -> Void
}
