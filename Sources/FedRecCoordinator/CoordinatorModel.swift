public import FedRecFederation
public import FedRecModel
public import FedRecTensor

/// The coordinator's model state: what `FederatedServer` holds, with the server optimizer state exposed so it
/// can be persisted and restored (`OptimizerCheckpoint`), the item tower's Adam moments included.
public struct CoordinatorModel: Sendable {
    public let configuration: TwoTowerConfiguration
    public private(set) var userTower: UserTower
    public private(set) var itemTower: ItemTower
    public private(set) var itemEmbeddings: Matrix
    public private(set) var serverOptimizer: ServerOptimizer
    public private(set) var itemOptimizer: Optimizer
    public let itemFeatures: SparseMatrix
    /// The moving average of the global model, when the run keeps one: what is evaluated and saved.
    public private(set) var average: ModelAverage?

    public init(
        model: TwoTowerModel, itemFeatures: SparseMatrix, serverOptimizer: ServerOptimizer,
        itemOptimizer: Optimizer, average: ModelAverage? = nil
    ) {
        self.average = average
        configuration = model.configuration
        userTower = model.userTower
        itemTower = model.itemTower
        self.itemFeatures = itemFeatures
        self.serverOptimizer = serverOptimizer
        self.itemOptimizer = itemOptimizer
        itemEmbeddings = model.itemTower.embeddings(itemFeatures: itemFeatures)
    }

    /// The raw global model (what clients train from).
    public var model: TwoTowerModel { TwoTowerModel(userTower: userTower, itemTower: itemTower) }
    /// The model evaluated, saved and queried: the average when there is one, else the raw model.
    public var servedModel: TwoTowerModel { average?.model ?? model }
    public var layout: ParameterLayout { .userTower(configuration) }

    /// As `FederatedServer.apply`: server optimizer on the user tower, then the central item-tower step, both
    /// learning rates times `learningRateScale`; then the average (if any) takes in the new model.
    public mutating func apply(_ aggregate: AggregateUpdate, learningRateScale: Float = 1) {
        defer {
            let updated = model
            average?.update(with: updated)
        }
        var flat = userTower.flattened()
        serverOptimizer.apply(delta: aggregate.meanDelta, to: &flat, learningRateScale: learningRateScale)
        userTower = UserTower(configuration: configuration, flattened: flat)
        let gradients = itemTower.backward(
            itemEmbeddingGradient: aggregate.meanItemEmbeddingGradient, itemFeatures: itemFeatures)
        itemOptimizer.beginStep(learningRateScale: learningRateScale)
        itemTower.apply(gradients, optimizer: &itemOptimizer)
        itemEmbeddings = itemTower.embeddings(itemFeatures: itemFeatures)
    }
}
