import Dispatch
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Runs `first` and `second` at the same time (on two threads when the machine has them) and returns once both
/// have. The two must touch disjoint state: that is what lets them mutate the caller's variables without
/// synchronisation. The compiler rejects only a variable that one closure modifies and the other captures; it
/// cannot see state reached through classes or methods, which the caller must keep apart.
///
/// CPU time either closure spends on a helper thread is added to the calling thread's
/// `HelperCPU.secondsOnThisThread`, so a caller timing itself with its thread's CPU clock can count it.
public func concurrently(_ first: () -> Void, _ second: () -> Void) {
    let caller = pthread_self()
    let helperTime = HelperTime()
    withoutActuallyEscaping(first) { first in
        withoutActuallyEscaping(second) { second in
            let pair = ClosurePair(first: first, second: second)
            DispatchQueue.concurrentPerform(iterations: 2) { part in
                let onHelper = pthread_equal(pthread_self(), caller) == 0
                let start = onHelper ? HelperCPU.threadCPUNanoseconds() : 0
                if part == 0 { pair.first() } else { pair.second() }
                if onHelper { helperTime.add(HelperCPU.threadCPUNanoseconds() - start) }
            }
        }
    }
    HelperCPU.credit(nanoseconds: helperTime.total)
}

/// CPU time that helper threads spent for `concurrently` calls made on a thread.
public enum HelperCPU {
    /// Seconds helper threads have spent for `concurrently` calls made on the current thread, since the thread
    /// started (only differences are meaningful).
    public static var secondsOnThisThread: Double {
        Double(UInt(bitPattern: pthread_getspecific(key))) / 1e9
    }

    /// The current thread's CPU time plus `secondsOnThisThread` (only differences are meaningful): what a section
    /// of code cost, wherever its `concurrently` parts ran.
    public static var threadSecondsWithHelpers: Double {
        Double(threadCPUNanoseconds()) / 1e9 + secondsOnThisThread
    }

    /// The counter lives in a thread-specific slot, as the pointer's bit pattern (no allocation per thread).
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        let status = pthread_key_create(&key, nil)
        precondition(status == 0, "pthread_key_create failed (\(status))")
        return key
    }()

    static func credit(nanoseconds: UInt64) {
        guard nanoseconds > 0 else { return }
        let now = UInt(bitPattern: pthread_getspecific(key)) &+ UInt(nanoseconds)
        let status = pthread_setspecific(key, UnsafeRawPointer(bitPattern: now))
        precondition(status == 0, "pthread_setspecific failed (\(status))")
    }

    static func threadCPUNanoseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
    }
}

/// The closures of one `concurrently` call, handed to Dispatch's worker threads.
private struct ClosurePair: @unchecked Sendable {
    let first: () -> Void
    let second: () -> Void
}

/// CPU nanoseconds the helper threads of one `concurrently` call spent (each adds under the lock; read after
/// `concurrentPerform` returns).
private final class HelperTime: Sendable {
    private let nanoseconds = Mutex<UInt64>(0)
    func add(_ spent: UInt64) { nanoseconds.withLock { $0 &+= spent } }
    var total: UInt64 { nanoseconds.withLock { $0 } }
}
