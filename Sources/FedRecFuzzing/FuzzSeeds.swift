import FedRecFederation
import FedRecProtocol
import FedRecSecurity
import FedRecTensor

/// Valid messages of every target, made by the real encoders and by a real five-participant SecAgg+ round (one
/// participant drops before its masked input, so the unmask stage carries both kinds of shares).
struct FuzzSeeds: Sendable {
    var messages: [FuzzTarget: [[UInt8]]] = [:]
    /// The session key of the fuzzed client (the coordinator's receive key is the client's transmit key).
    let sessionKey: SymmetricKey
    /// A SecAgg+ server waiting for advertised keys; every check receives into a copy.
    let advertisingServer: SecureAggregationServer

    init(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed ^ 0xF022)
        func values(_ count: Int, scale: Float) -> [Float] {
            (0..<count).map { _ in (Float(rng.next() % 2_001) / 1_000 - 1) * scale }
        }
        let shapes = MessageFuzzer.shapes
        let (rows, d) = (shapes.itemRows, shapes.dimension)
        sessionKey = try SymmetricKey()

        // Updates: dense and block-sparse deltas, dense and row-sparse gradients, float32 and bfloat16, each
        // clipping report.
        let dense = ClientUpdate(
            userTowerDelta: values(shapes.userTowerCount, scale: 0.1),
            itemEmbeddingGradient: .dense(Matrix(rows: rows, columns: d, storage: values(rows * d, scale: 0.5))),
            exampleCount: 12, meanLoss: 3.5)
        var sparseDelta = [Float](repeating: 0, count: shapes.userTowerCount)
        for block in [0, 2, 5] {
            for i in (block * 64)..<min(block * 64 + 64, sparseDelta.count) {
                sparseDelta[i] = values(1, scale: 0.2)[0]
            }
        }
        var rowSparse = RowSparseGradient(tableRows: rows, columns: d)
        for row in [3, 17, 39] {
            let slot = rowSparse.slot(for: row)
            let rowValues = values(d, scale: 1)
            rowSparse.withUnsafeMutableValues { v in for j in 0..<d { v[slot * d + j] = rowValues[j] } }
        }
        var sparse = ClientUpdate(
            userTowerDelta: sparseDelta, itemEmbeddingGradient: .rowSparse(rowSparse), exampleCount: 1, meanLoss: 0.25)
        sparse.unclipped = true
        var clipped = dense
        clipped.unclipped = false
        messages[.updatePayload] = [
            ClientUpdatePayload.encode(dense), ClientUpdatePayload.encode(sparse),
            ClientUpdatePayload.encode(clipped, precision: .bfloat16),
            ClientUpdatePayload.encode(sparse, precision: .bfloat16),
        ]

        // A SecAgg+ round: 5 participants, the complete graph (k 4), threshold 3.
        let participantCount = 5
        let vectorLength = 16
        let parameters = SecureAggregationParameters(
            round: UInt64(MessageFuzzer.round), participants: (0..<participantCount).map { "user-\($0)" },
            vectorLength: vectorLength, clipRange: 1, maximumWeight: 10, graphSeed: seed)
        let identities = try (0..<participantCount).map { _ in
            try SigningIdentity(seed: SecureBytes(copying: (0..<32).map { _ in UInt8(truncatingIfNeeded: rng.next()) }))
        }
        let identityKeys = identities.map(\.publicKey)
        var clients = try (0..<participantCount).map {
            try SecureAggregationClient(
                parameters: parameters, index: $0, identity: identities[$0], identityKeys: identityKeys)
        }
        var server = try SecureAggregationServer(parameters: parameters, identityKeys: identityKeys)
        advertisingServer = server
        var advertised: [[UInt8]] = []
        for index in 0..<participantCount {
            let keys = try clients[index].advertiseKeys()
            advertised.append(keys.serialized())
            try server.receive(keys)
        }
        let roster = try server.closeAdvertiseKeys()
        var shareLists: [[UInt8]] = []
        for index in 0..<participantCount {
            let shares = try clients[index].shareKeys(roster: roster)
            shareLists.append(EncryptedShare.serialized(shares, round: parameters.round))
            try server.receive(shares, from: index)
        }
        let inboxes = try server.closeShareKeys()
        var masked: [[UInt8]] = []
        for index in 0..<(participantCount - 1) {
            let input = try clients[index].maskedInput(
                values(vectorLength, scale: 1), weight: 1, shares: inboxes[index] ?? [])
            masked.append(input.serialized())
            try server.receive(input)
        }
        let request = try server.closeMaskedInput()
        var responses: [[UInt8]] = []
        for index in request.survivors {
            let response = try clients[index].unmask(request)
            responses.append(response.serialized())
            try server.receive(response)
        }
        _ = try server.finish()  // the seeds are a complete, valid round
        messages[.advertisedKeys] = advertised
        messages[.roster] = [roster.serialized()]
        messages[.encryptedShares] =
            shareLists
            + inboxes.keys.sorted().map { EncryptedShare.serialized(inboxes[$0]!, round: parameters.round) }
        messages[.maskedInput] = masked
        messages[.unmaskRequest] = [request.serialized()]
        messages[.unmaskResponse] = responses

        // Round assignments: float32, bfloat16, and one with the round's secure-aggregation section.
        let tower = values(shapes.userTowerCount, scale: 1)
        let items = Matrix(rows: rows, columns: d, storage: values(rows * d, scale: 1))
        let round = MessageFuzzer.round
        messages[.roundAssignment] = [
            GlobalModelPayload(round: round, userTower: tower, itemEmbeddings: items).encoded(),
            GlobalModelPayload(round: round, userTower: tower, itemEmbeddings: items, precision: .bfloat16).encoded(),
            GlobalModelPayload(
                round: round, userTower: tower, itemEmbeddings: items,
                secure: SecureRoundAssignment(
                    parameters: parameters, identityKeys: identityKeys, weighting: .uniform, reportsClipping: true)
            ).encoded(),
        ]
    }
}
