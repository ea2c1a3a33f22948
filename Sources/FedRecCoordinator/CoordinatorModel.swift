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

    public init(
        model: TwoTowerModel, itemFeatures: SparseMatrix, serverOptimizer: ServerOptimizer,
        itemOptimizer: Optimizer
    ) {
        configuration = model.configuration
        userTower = model.userTower
        itemTower = model.itemTower
        self.itemFeatures = itemFeatures
        self.serverOptimizer = serverOptimizer
        self.itemOptimizer = itemOptimizer
        itemEmbeddings = model.itemTower.embeddings(itemFeatures: itemFeatures)
    }

    public var model: TwoTowerModel { TwoTowerModel(userTower: userTower, itemTower: itemTower) }
    public var layout: ParameterLayout { .userTower(configuration) }

    /// As `FederatedServer.apply`: server optimizer on the user tower, then the central item-tower step.
    public mutating func apply(_ aggregate: AggregateUpdate) {
        var flat = userTower.flattened()
        serverOptimizer.apply(delta: aggregate.meanDelta, to: &flat)
        userTower = UserTower(configuration: configuration, flattened: flat)
        let gradients = itemTower.backward(
            itemEmbeddingGradient: aggregate.meanItemEmbeddingGradient, itemFeatures: itemFeatures)
        itemOptimizer.beginStep()
        itemTower.apply(gradients, optimizer: &itemOptimizer)
        itemEmbeddings = itemTower.embeddings(itemFeatures: itemFeatures)
    }
}
