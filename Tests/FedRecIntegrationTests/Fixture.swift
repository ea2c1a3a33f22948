import FedRecClient
import FedRecCoordinator
import FedRecData
import FedRecFederation
import FedRecProtocol
import FedRecSecurity
import Foundation
import GRPCInProcessTransport

/// A temporary run folder: a tiny synthetic data set, the coordinator's and every user's keys, an allow-list.
struct Fixture {
    let root: String
    var dataset: String { root + "/dataset" }
    var keys: String { root + "/keys" }
    var allowList: String { root + "/allow-list" }
    var state: String { root + "/state" }
    let userIDs: [String]

    init(users: Int = 8, items: Int = 20) throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("fedrec-it-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let source = root + "/interactions.tsv"
        try Self.syntheticInteractions(users: users, items: items).write(
            toFile: source, atomically: true, encoding: .utf8)
        let imported = try DatasetImporter.importDataset(format: .generic, source: source)
        let loaded = try imported.write(to: root + "/dataset")
        userIDs = loaded.userIDs
        let keys = root + "/keys"
        try FileManager.default.createDirectory(atPath: keys, withIntermediateDirectories: true)
        let coordinator = try Identity.generate(name: CoordinatorBuilder.identityName)
        _ = try KeyFiles.write(coordinator, directory: keys)
        var lines = ""
        for user in userIDs {
            let identity = try Identity.generate(name: Wire.clientID(forUser: user))
            _ = try KeyFiles.write(identity, directory: keys)
            lines += identity.publicIdentity.line + "\n"
        }
        try lines.write(toFile: root + "/allow-list", atomically: true, encoding: .utf8)
    }

    func remove() { try? FileManager.default.removeItem(atPath: root) }

    /// Runs a coordinator with `options` and one in-process client process hosting every user until training is
    /// over; returns both for inspection.
    @discardableResult
    func trainInProcess(_ options: CoordinatorOptions) async throws -> (
        coordinator: Coordinator<InProcessTransport.Server>, clients: FederatedClient<InProcessTransport.Client>
    ) {
        let transport = InProcessTransport()
        let coordinator = try CoordinatorBuilder.build(options: options, transport: transport.server)
        let clients = try ClientBuilder.build(options: clientOptions(.first(100)), transport: transport.client)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await coordinator.run() }
            group.addTask { try await clients.run() }
            try await group.waitForAll()
        }
        return (coordinator, clients)
    }

    /// Two taste groups, each preferring its half of the catalogue.
    static func syntheticInteractions(users: Int, items: Int) -> String {
        var state: UInt64 = 42
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        var lines = ["user\titem\tvalue\ttimestamp"]
        for user in 0..<users {
            let group = user % 2
            var seen = Set<Int>()
            for step in 0..<12 {
                let half = next() % 10 < 8 ? group : 1 - group
                let item = half * (items / 2) + Int(next() % UInt64(items / 2))
                guard seen.insert(item).inserted else { continue }
                lines.append("u\(user)\ti\(item)\t1\t\(1_000 + step)")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    func coordinatorOptions(rounds: Int) -> CoordinatorOptions {
        var o = CoordinatorOptions(
            datasetPath: dataset, keysDirectory: keys, allowListPath: allowList, stateDirectory: state)
        o.rounds = rounds
        o.port = 0
        o.cohort = .fraction(1)
        o.minimumClients = 1
        o.deadline = .seconds(30)
        o.dimension = 8
        o.hiddenWidth = 8
        o.evaluationInterval = 1
        o.enrolmentGrace = .seconds(30)
        // Ends as soon as every client process was told training is over; the bound only matters for a client
        // that is gone, and must outlast a loaded machine's slowest poll.
        o.finishLinger = .seconds(10)
        o.clientTraining = ClientTrainingConfiguration(localEpochs: 1, batchSize: 8, optimizer: .sgd(learningRate: 0.5))
        return o
    }

    func clientOptions(_ users: UserSelection) -> ClientOptions {
        var o = ClientOptions(datasetPath: dataset, keysDirectory: keys, users: users)
        o.pollMilliseconds = 200
        return o
    }
}
