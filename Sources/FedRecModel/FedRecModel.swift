// The FedRecModel module; see the DocC catalogue and README for its design.
