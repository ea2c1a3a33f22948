import FedRecData
import FedRecFederation
import FedRecModel
import FedRecTensor
import Synchronization
import Testing

/// A clock that moves only when told (`advance(by:)`); sleepers wake when the clock passes their deadline.
final class ManualClock: Clock, @unchecked Sendable {
    struct Instant: InstantProtocol {
        var offset: Duration
        func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        func duration(to other: Instant) -> Duration { other.offset - offset }
        static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
    }

    private struct State {
        var now = Instant(offset: .zero)
        var sleepers: [(deadline: Instant, continuation: CheckedContinuation<Void, Never>)] = []
    }
    private let state = Mutex(State())

    var now: Instant { state.withLock { $0.now } }
    var minimumResolution: Duration { .zero }

    func advance(by duration: Duration) {
        let woken = state.withLock { s in
            s.now = s.now.advanced(by: duration)
            let now = s.now
            let ready = s.sleepers.filter { $0.deadline <= now }
            s.sleepers.removeAll { $0.deadline <= now }
            return ready.map(\.continuation)
        }
        for continuation in woken { continuation.resume() }
    }

    func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { s in
                if deadline <= s.now { return true }
                s.sleepers.append((deadline, continuation))
                return false
            }
            if ready { continuation.resume() }
        }
    }
}

/// Relative comparison (swift-numerics style).
func isClose(_ a: Double, _ b: Double, relative: Double = 1e-4, absolute: Double = 1e-6) -> Bool {
    abs(a - b) <= max(absolute, relative * max(abs(a), abs(b)))
}

/// A tiny synthetic catalogue: 4 clusters of 6 items; each user likes one cluster (plus one stray item), so
/// a user's history predicts its other items and training loss can fall.
struct SyntheticData {
    let configuration: TwoTowerConfiguration
    let users: [FoldUser]
    let itemFeatures: SparseMatrix

    init(users userCount: Int = 12, seed: UInt64 = 3, itemFeatureCount: Int = 4) {
        let itemCount = 24
        configuration = TwoTowerConfiguration(
            dimension: 8, hiddenWidth: 16, tau: 0.2, itemCount: itemCount, itemFeatureCount: itemFeatureCount)
        var rng = SplitMix64(seed: seed)
        users = (0..<userCount).map { u in
            let cluster = u % 4
            var known = (0..<6).map { Int32(cluster * 6 + $0) }.filter { _ in rng.next() % 4 != 0 }
            known.append(Int32(rng.next() % UInt64(itemCount)))
            if known.count < 3 { known += [Int32(cluster * 6), Int32(cluster * 6 + 1)] }
            var seen = Set<Int32>()
            known = known.filter { seen.insert($0).inserted }
            return FoldUser(userIndex: u, known: known, heldOut: [])
        }
        itemFeatures = SparseMatrix(
            columns: itemFeatureCount,
            rows: (0..<itemCount).map { i in
                itemFeatureCount == 0 ? [] : [(column: (i / 6) % itemFeatureCount, value: Float(1))]
            })
    }

    var dataset: FederatedDataset { FederatedDataset(users: users, itemFeatures: itemFeatures, userFeatures: nil) }
    var model: TwoTowerModel { TwoTowerModel(configuration: configuration, seed: 11) }
    var ids: [ClientID] { users.map { "user-\($0.userIndex)" } }
    var validator: UpdateValidator {
        UpdateValidator(
            layout: .userTower(configuration), itemRows: configuration.itemCount, dimension: configuration.dimension)
    }
}
