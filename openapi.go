// Package pluginfacade holds what the server ships as it is: the OpenAPI
// document of its REST face. It sits at the root of the module only because
// go:embed cannot reach into a parent folder.
package pluginfacade

import _ "embed"

//go:embed api/openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3.0 document of the REST gateway
// (api/openapi.json): Confluent Cloud's own paths, resources and Failure
// envelope as the gateway serves them, and the watch route. It is kept by
// hand; the server's tests validate real REST answers against it and check
// that its schemas and the contract's messages have the same fields. The
// caller gets its own copy.
func OpenAPI() []byte {
	return append([]byte(nil), openAPI...)
}
