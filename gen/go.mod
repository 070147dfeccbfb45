// The client module: the Go code generated from proto/ (messages and the
// gRPC client and server interfaces), and nothing of the server. An internal
// client imports github.com/acme/plugin-facade/gen/go/confluent/plugin/v1
// after `go get github.com/acme/plugin-facade/gen@<gen/vX.Y.Z tag>`. Its
// requirements are grpc and protobuf (and the google/api annotations the
// protos use) only; cmd/server's TestClientModuleDependencies keeps it so.
module github.com/acme/plugin-facade/gen

go 1.26.0

require (
	google.golang.org/genproto/googleapis/api v0.0.0-20260817212433-ac3dfec99bb1
	google.golang.org/grpc v1.85.0
	google.golang.org/protobuf v1.36.12
)

require (
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260817212433-ac3dfec99bb1 // indirect
)
