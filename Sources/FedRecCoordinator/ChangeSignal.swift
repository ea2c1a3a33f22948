import Synchronization

/// Wakes the coordinator's waiters (long-polling RPC handlers, the round driver) when its round state changes,
/// instead of having them poll on a short timer: a waiter reads `version`, checks the state, and waits until a
/// `notify()` after that read or its timeout, whichever comes first. A notify between the read and the wait
/// is never lost (the version has moved, so the wait returns at once).
final class ChangeSignal: Sendable {
    private struct State {
        var version: UInt64 = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextID = 0
    }

    private let state = Mutex(State())

    /// Read before checking the state a waiter waits on.
    var version: UInt64 { state.withLock { $0.version } }

    /// Something changed: wakes every current waiter.
    func notify() {
        let waiters = state.withLock { s in
            s.version &+= 1
            defer { s.waiters.removeAll(keepingCapacity: true) }
            return Array(s.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once `notify()` has been called since `version` was read, or after `timeout` on `clock`.
    func wait(after version: UInt64, timeout: Duration, clock: ElapsedClock) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await clock.sleep(for: timeout) }
            group.addTask { await self.waitForNotify(after: version) }
            await group.next()
            group.cancelAll()
        }
    }

    private func waitForNotify(after version: UInt64) async {
        let id = state.withLock { s in
            s.nextID += 1
            return s.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { s in
                    // Cancelled before registering (the handler found nothing to resume) or already notified.
                    if s.version != version || Task.isCancelled { return true }
                    s.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }
}
