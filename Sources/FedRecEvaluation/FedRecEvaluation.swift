// The FedRecEvaluation module; see the DocC catalogue and README for its design.
