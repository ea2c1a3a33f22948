import FedRecFederation
import FedRecModel
import FedRecTensor
import Testing

@Suite struct FederatedServerTests {
    /// `apply` runs the user-tower step and the item step side by side, and back-propagates through the item
    /// tower's forward pass kept from the previous step. The result must be bit for bit that of the two steps
    /// one after the other, with the forward pass recomputed every time.
    @Test func applyEqualsTheTwoStepsOneAfterTheOther() {
        let data = SyntheticData()
        let serverConfiguration = ServerOptimizerConfiguration.fedAdam(learningRate: 0.05)
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

            #expect(server.userTower == userTower, "round \(round): user tower")
            #expect(server.itemTower == itemTower, "round \(round): item tower")
            #expect(server.itemEmbeddings == itemTower.embeddings(itemFeatures: data.itemFeatures))
            #expect(server.serverOptimizer.moments == serverOptimizer.moments)
            #expect(server.appliedRounds == round + 1)
        }
        // The steps moved the model (a comparison of two unchanged models would prove nothing).
        #expect(userTower != data.model.userTower && itemTower != data.model.itemTower)
    }
}
