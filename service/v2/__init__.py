"""The Open Inference Protocol's REST routes (the "V2" protocol of KServe, MLServer and Triton), served through
`/predict`'s path: `protocol` the bodies, `codec` the mapping to `/predict`'s request and back, `routes` the routes."""
