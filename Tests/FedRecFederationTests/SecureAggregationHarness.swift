import FedRecFederation
import FedRecSecurity
import FedRecTensor
import Testing

/// Which clients go silent before sending each stage's message.
struct SecAggDropouts: Sendable {
    var advertiseKeys = Set<Int>()
    var shareKeys = Set<Int>()
    var maskedInput = Set<Int>()
    var unmask = Set<Int>()
}

/// Ways for a test to play a malicious coordinator, client or network between the stages.
struct SecAggHooks {
    /// Rewrites a client's advertised keys before the server sees them.
    var advertised: ((inout AdvertisedKeys) throws -> Void)? = nil
    /// Rewrites the inboxes the server relays.
    var inboxes: ((inout [Int: [EncryptedShare]]) throws -> Void)? = nil
    /// Rewrites a client's unmask response before the server sees it.
    var response: ((inout UnmaskResponse) throws -> Void)? = nil
}

/// An in-memory SecAgg+ round: n clients and a server, every message passed through its wire form.
struct SecAggRound {
    let parameters: SecureAggregationParameters
    var clients: [SecureAggregationClient]
    var server: SecureAggregationServer
    /// The clients' Ed25519 identities (a test can sign on a client's behalf).
    let identities: [SigningIdentity]
    /// Errors thrown by `server.receive` (logged by a real coordinator while the round goes on).
    var serverRejections: [SecureAggregationError] = []
    /// Errors thrown by clients (a client that throws stops taking part).
    var clientErrors: [Int: SecureAggregationError] = [:]

    init(
        participants n: Int, vectorLength: Int, neighbourCount: Int? = nil, threshold: Int? = nil,
        clipRange: Float = 1, maximumWeight: Float = 100, seed: UInt64
    ) throws {
        parameters = SecureAggregationParameters(
            round: seed % 1000 + 1, participants: (0..<n).map { "client-\($0)" }, vectorLength: vectorLength,
            clipRange: clipRange, maximumWeight: maximumWeight, graphSeed: seed, neighbourCount: neighbourCount,
            threshold: threshold)
        var rng = SplitMix64(seed: seed ^ 0x5EC)
        let identities = try (0..<n).map { _ in
            try SigningIdentity(seed: SecureBytes(copying: (0..<32).map { _ in UInt8(truncatingIfNeeded: rng.next()) }))
        }
        self.identities = identities
        let keys = identities.map(\.publicKey)
        let parameters = parameters
        clients = try (0..<n).map {
            try SecureAggregationClient(parameters: parameters, index: $0, identity: identities[$0], identityKeys: keys)
        }
        server = try SecureAggregationServer(parameters: parameters, identityKeys: keys)
    }

    /// Runs the four stages with pre-encoded inputs (L + 1 words per client).
    mutating func run(
        encoded inputs: [[UInt32]], dropouts: SecAggDropouts = .init(), hooks: SecAggHooks = .init()
    ) throws -> SecureAggregate {
        try run(dropouts: dropouts, hooks: hooks) { client, index, inbox in
            try client.maskedInput(encoded: inputs[index], shares: inbox)
        }
    }

    /// Runs the four stages with float inputs and weights.
    mutating func run(
        values: [[Float]], weights: [Float], dropouts: SecAggDropouts = .init(), hooks: SecAggHooks = .init()
    ) throws -> SecureAggregate {
        try run(dropouts: dropouts, hooks: hooks) { client, index, inbox in
            try client.maskedInput(values[index], weight: weights[index], shares: inbox)
        }
    }

    private mutating func serverReceive(_ body: (inout SecureAggregationServer) throws -> Void) throws {
        do { try body(&server) } catch let error as SecureAggregationError { serverRejections.append(error) }
    }

    private mutating func clientCall<T>(_ index: Int, _ body: (inout SecureAggregationClient) throws -> T) throws -> T?
    {
        do { return try body(&clients[index]) } catch let error as SecureAggregationError {
            clientErrors[index] = error
            return nil
        }
    }

    mutating func run(
        dropouts: SecAggDropouts, hooks: SecAggHooks,
        input: (inout SecureAggregationClient, Int, [EncryptedShare]) throws -> MaskedInput
    ) throws -> SecureAggregate {
        let n = parameters.participants.count
        let round = parameters.round
        // Stage 1
        for index in 0..<n where !dropouts.advertiseKeys.contains(index) {
            guard var keys = try clientCall(index, { try $0.advertiseKeys() }) else { continue }
            try hooks.advertised?(&keys)
            let wire = try AdvertisedKeys(serialized: keys.serialized())
            try serverReceive { try $0.receive(wire) }
        }
        let roster = try Roster(serialized: server.closeAdvertiseKeys().serialized())
        // Stage 2
        for index in roster.indices where !dropouts.shareKeys.contains(index) {
            guard let shares = try clientCall(index, { try $0.shareKeys(roster: roster) }) else { continue }
            let wire = try EncryptedShare.list(serialized: EncryptedShare.serialized(shares, round: round))
            #expect(wire.round == round)
            try serverReceive { try $0.receive(wire.shares, from: index) }
        }
        var inboxes = try server.closeShareKeys()
        try hooks.inboxes?(&inboxes)
        // Stage 3
        for index in inboxes.keys.sorted() where !dropouts.maskedInput.contains(index) {
            let inbox = try EncryptedShare.list(serialized: EncryptedShare.serialized(inboxes[index]!, round: round))
            guard let masked = try clientCall(index, { try input(&$0, index, inbox.shares) }) else { continue }
            let wire = try MaskedInput(serialized: masked.serialized())
            try serverReceive { try $0.receive(wire) }
        }
        let request = try UnmaskRequest(serialized: server.closeMaskedInput().serialized())
        // Stage 4
        for index in request.survivors where !dropouts.unmask.contains(index) {
            guard var response = try clientCall(index, { try $0.unmask(request) }) else { continue }
            try hooks.response?(&response)
            let wire = try UnmaskResponse(serialized: response.serialized())
            #expect(wire == response)
            try serverReceive { try $0.receive(wire) }
        }
        return try server.finish()
    }
}

/// The wrapping sum of the words of `members`.
func secAggWrappingSum(_ inputs: [[UInt32]], members: [Int]) -> [UInt32] {
    var sum = [UInt32](repeating: 0, count: inputs.first?.count ?? 0)
    for member in members {
        for i in sum.indices { sum[i] &+= inputs[member][i] }
    }
    return sum
}

/// Runs `body` and returns the `SecureAggregationError` it throws (recording an issue when it throws none).
func secAggError(
    sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) -> SecureAggregationError? {
    do {
        try body()
        Issue.record("expected a SecureAggregationError, nothing thrown", sourceLocation: sourceLocation)
    } catch let error as SecureAggregationError {
        return error
    } catch {
        Issue.record("expected a SecureAggregationError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}
