package api

import _ "embed" // the document below

// OpenAPI is openapi.yaml, the API's OpenAPI 3 document: tests drive the
// agent from it (its routes, and a fuzz test of every operation).
//
//go:embed openapi.yaml
var OpenAPI []byte
