public import FedRecFederation
public import FedRecModel
public import FedRecTensor

/// The coordinator's model state: a `FederatedServer` (the same server step as `fedrec simulate`), whose
/// optimizer state is persisted and restored (`OptimizerCheckpoint`), plus the moving average when the run
/// keeps one.
public struct CoordinatorModel: Sendable {
    public private(set) var server: FederatedServer
    /// The moving average of the global model, when the run keeps one: what is evaluated and saved.
    public private(set) var average: ModelAverage?

    public init(
        model: TwoTowerModel, itemFeatures: SparseMatrix, serverOptimizer: ServerOptimizer,
        itemOptimizer: Optimizer, average: ModelAverage? = nil
    ) {
        server = FederatedServer(
            model: model, itemFeatures: itemFeatures, serverOptimizer: serverOptimizer, itemOptimizer: itemOptimizer)
        self.average = average
    }

    public var configuration: TwoTowerConfiguration { server.configuration }
    public var userTower: UserTower { server.userTower }
    public var itemTower: ItemTower { server.itemTower }
    /// Normalised item embeddings of the raw model's item tower (what clients train against).
    public var itemEmbeddings: Matrix { server.itemEmbeddings }
    public var serverOptimizer: ServerOptimizer { server.serverOptimizer }
    public var itemOptimizer: Optimizer { server.itemOptimizer }
    public var itemFeatures: SparseMatrix { server.itemFeatures }
    public var layout: ParameterLayout { server.layout }
    /// The raw global model (what clients train from).
    public var model: TwoTowerModel { server.model }
    /// The model evaluated, saved and queried: the average when there is one, else the raw model.
    public var servedModel: TwoTowerModel { average?.model ?? model }

    /// `FederatedServer.apply` (server optimizer on the user tower, then the central item-tower step, both
    /// learning rates times `learningRateScale`); then the average (if any) takes in the new model.
    public mutating func apply(_ aggregate: AggregateUpdate, learningRateScale: Float = 1) {
        server.apply(aggregate, learningRateScale: learningRateScale)
        average?.update(with: server.model)
    }
}
