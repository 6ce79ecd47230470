// Package securetest holds the integration tests of secure clusters: the
// order topology end to end on an embedded broker (kfake) with TLS
// (certificates generated in the test, mutual TLS) and with SASL/SCRAM
// users under enforced ACLs; clear, non-retried errors without leaked
// secrets for a wrong password, an untrusted certificate and a missing ACL;
// and, for every ACL of runtime.App.RequiredACLs, that removing it alone
// makes the app stop with an error naming it.
package securetest
