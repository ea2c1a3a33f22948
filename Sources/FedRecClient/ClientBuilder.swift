import FedRecData
import FedRecProtocol
import FedRecSecurity
public import GRPCCore
public import Logging

/// Builds a client process from options (the CLI and the tests call it).
public enum ClientBuilder {
    public static func build<Transport: ClientTransport>(
        options: ClientOptions, transport: Transport, clock: any Clock<Duration> = ContinuousClock(),
        logger: Logger = Logger(label: "fedrec.client"), onAssignment: (@Sendable (Int, Int) -> Void)? = nil,
        interceptors: [any ClientInterceptor] = []
    ) throws -> FederatedClient<Transport> {
        func setup(_ message: String) -> ClientError { ClientError(code: .setup, message: message) }
        let dataset: Dataset
        do { dataset = try Dataset.load(from: options.datasetPath) } catch { throw setup("\(error)") }
        let coordinator: PublicIdentity
        do {
            coordinator = try KeyFiles.loadPublicIdentity(path: options.keysDirectory + "/coordinator.pub")
        } catch { throw setup("\(error)") }
        var withData = Set<Int>()
        for user in dataset.split.fold(.test) where !user.known.isEmpty { withData.insert(user.userIndex) }
        let indices: [Int]
        switch options.users {
        case .first(let count):
            indices = Array((0..<dataset.userIDs.count).filter { withData.contains($0) }.prefix(count))
        case .shard(let index, let count):
            indices = (0..<dataset.userIDs.count).filter { withData.contains($0) && $0 % count == index }
        case .ids(let ids):
            var position: [String: Int] = [:]
            for (i, id) in dataset.userIDs.enumerated() { position[id] = i }
            var seen = Set<String>()
            indices = try ids.map { id in
                guard let i = position[id] else { throw setup("user '\(id)' is not in the data set") }
                guard seen.insert(id).inserted else { throw setup("user '\(id)' is listed twice") }
                return i
            }
        }
        guard !indices.isEmpty else { throw setup("no users selected") }
        var clients: [VirtualClient] = []
        for index in indices {
            let id = Wire.clientID(forUser: dataset.userIDs[index])
            do {
                let identity = try KeyFiles.loadIdentity(path: options.keysDirectory + "/\(id).key")
                guard identity.name == id else { throw setup("\(id).key holds the identity '\(identity.name)'") }
                let keys = try identity.keyAgreement.clientSessionKeys(serverPublicKey: coordinator.keyAgreementKey)
                clients.append(VirtualClient(id: id, userIndex: index, identity: identity, keys: keys))
            } catch let error as ClientError {
                throw error
            } catch {
                throw setup("\(error)")
            }
        }
        return FederatedClient(
            grpc: GRPCClient(transport: transport, interceptors: interceptors), options: options, dataset: dataset,
            clients: clients,
            coordinator: coordinator, logger: logger, clock: clock, onAssignment: onAssignment)
    }
}
