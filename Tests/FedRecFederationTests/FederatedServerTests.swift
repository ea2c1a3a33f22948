import FedRecFederation
import FedRecModel
import FedRecTensor
import Testing

@Suite struct FederatedServerTests {
    /// `apply` runs the user-tower step and the item step side by side, and back-propagates through the item
    /// tower's forward pass kept from the previous step. The result must be bit for bit that of the two steps
    /// one after the other, with the forward pass recomputed every time.
    @Test(arguments: [
        ServerOptimizerConfiguration.fedAdam(learningRate: 0.05),
        .adam(learningRate: 0.05, beta1: 0.9, beta2: 0.999, epsilon: 1e-8), .fedAvg(learningRate: 1),
    ])
    func applyEqualsTheTwoStepsOneAfterTheOther(serverConfiguration: ServerOptimizerConfiguration) {
        let data = SyntheticData()
        let itemConfiguration = OptimizerConfiguration.adam(learningRate: 0.01)
        var server = FederatedServer(
            model: data.model, itemFeatures: data.itemFeatures, serverOptimizer: serverConfiguration,
            itemOptimizer: itemConfiguration)
        var userTower = data.model.userTower
        var itemTower = data.model.itemTower
        var serverOptimizer = ServerOptimizer(configuration: serverConfiguration)
        var itemOptimizer = Optimizer(configuration: itemConfiguration)
        var rng = SplitMix64(seed: 5)
        let parameterCount = userTower.flattened().count
        for round in 0..<4 {
            let scale: Float = round == 2 ? 0.5 : 1
            let aggregate = AggregateUpdate(
                meanDelta: (0..<parameterCount).map { _ in 0.01 * rng.nextGaussian() },
                meanItemEmbeddingGradient: .normal(
                    rows: data.configuration.itemCount, columns: data.configuration.dimension,
                    standardDeviation: 0.1, using: &rng),
                exampleCount: 10, meanLoss: 1, participants: ["a"])
            server.apply(aggregate, learningRateScale: scale)

            var flat = userTower.flattened()
            serverOptimizer.apply(delta: aggregate.meanDelta, to: &flat, learningRateScale: scale)
            userTower = UserTower(configuration: data.configuration, flattened: flat)
            let gradients = itemTower.backward(
                itemEmbeddingGradient: aggregate.meanItemEmbeddingGradient, itemFeatures: data.itemFeatures)
            itemOptimizer.beginStep(learningRateScale: scale)
            itemTower.apply(gradients, optimizer: &itemOptimizer)

            // Bit patterns, not Float ==, which equates -0 and +0 and never holds for NaN.
            #expect(bits(server.userTower.flattened()) == bits(userTower.flattened()), "round \(round): user tower")
            for (name, _, value) in itemTower.namedParameters {
                let served = server.itemTower.namedParameters.first { $0.name == name }?.value.storage ?? []
                #expect(bits(served) == bits(value.storage), "round \(round): \(name)")
            }
            #expect(
                bits(server.itemEmbeddings.storage)
                    == bits(itemTower.embeddings(itemFeatures: data.itemFeatures).storage))
            #expect(server.serverOptimizer == serverOptimizer, "round \(round): server optimizer (step and moments)")
            #expect(server.itemOptimizer.step == itemOptimizer.step)
            #expect(server.itemOptimizer.momentNames == itemOptimizer.momentNames)
            for name in itemOptimizer.momentNames {
                let (first, second) = server.itemOptimizer.moments(of: name)!
                let (expectedFirst, expectedSecond) = itemOptimizer.moments(of: name)!
                #expect(bits(first) == bits(expectedFirst) && bits(second) == bits(expectedSecond), "\(name)")
            }
            #expect(server.appliedRounds == round + 1)
        }
        // The steps moved the model (a comparison of two unchanged models would prove nothing).
        #expect(userTower != data.model.userTower && itemTower != data.model.itemTower)
    }
}

private func bits(_ values: [Float]) -> [UInt32] { values.map(\.bitPattern) }
