package engine

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/choreo-go/choreo/internal/graph"
)

var (
	// ErrNotAuthorized is wrapped by every *AuthorizationError: the broker
	// denied (or, at the start-up check, would deny) an operation the app needs.
	ErrNotAuthorized = errors.New("not authorized")
	// ErrAuthentication: the brokers rejected this client's credentials
	// (SASL), or the TLS handshake failed on a certificate.
	ErrAuthentication = errors.New("authentication failed")
)

// ACL is one access right the app's principal needs.
type ACL struct {
	// Resource is the resource type: topic, group, transactional id.
	Resource kmsg.ACLResourceType
	// Name is the resource name, or its prefix when Prefixed.
	Name string
	// Prefixed: the ACL covers every resource whose name starts with Name.
	Prefixed bool
	// Operation is the right to allow.
	Operation kmsg.ACLOperation
	// Reason says which requests need it.
	Reason string
}

// String renders the ACL as "Read on topic "x"" (with "prefixed" when so).
func (a ACL) String() string {
	s := opName(a.Operation) + " on " + resourceName(a.Resource) + " " + fmt.Sprintf("%q", a.Name)
	if a.Prefixed {
		s += " (prefixed)"
	}
	return s
}

// covers reports whether the ACL applies to resource name of its type.
func (a ACL) covers(rt kmsg.ACLResourceType, name string) bool {
	if a.Resource != rt {
		return false
	}
	if a.Prefixed {
		return strings.HasPrefix(name, a.Name)
	}
	return a.Name == name
}

// AuthorizationError names an access right the app lacks.
type AuthorizationError struct {
	// Resource is the resource type (topic, group, transactional id, cluster).
	Resource kmsg.ACLResourceType
	// Name is the resource the right is needed on.
	Name string
	// Operation is the missing right.
	Operation kmsg.ACLOperation
	// Request says where the denial was found: the start-up check or the
	// request the broker refused.
	Request string
	// Err is the broker's error, nil when the start-up check found the
	// right missing before any request was refused.
	Err error
}

func (e *AuthorizationError) Error() string {
	s := fmt.Sprintf("%v: the app's principal lacks %s on %s %q (%s)", ErrNotAuthorized, opName(e.Operation), resourceName(e.Resource), e.Name, e.Request)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s + "; grant the ACLs listed by RequiredACLs"
}

// Is makes errors.Is(err, ErrNotAuthorized) true.
func (e *AuthorizationError) Is(target error) bool { return target == ErrNotAuthorized }

// Unwrap returns the broker's error.
func (e *AuthorizationError) Unwrap() error { return e.Err }

func opName(op kmsg.ACLOperation) string {
	switch op {
	case kmsg.ACLOperationRead:
		return "Read"
	case kmsg.ACLOperationWrite:
		return "Write"
	case kmsg.ACLOperationCreate:
		return "Create"
	case kmsg.ACLOperationDelete:
		return "Delete"
	case kmsg.ACLOperationAlter:
		return "Alter"
	case kmsg.ACLOperationDescribe:
		return "Describe"
	case kmsg.ACLOperationDescribeConfigs:
		return "DescribeConfigs"
	case kmsg.ACLOperationAlterConfigs:
		return "AlterConfigs"
	case kmsg.ACLOperationIdempotentWrite:
		return "IdempotentWrite"
	case kmsg.ACLOperationClusterAction:
		return "ClusterAction"
	}
	return op.String()
}

func resourceName(rt kmsg.ACLResourceType) string {
	switch rt {
	case kmsg.ACLResourceTypeTopic:
		return "topic"
	case kmsg.ACLResourceTypeGroup:
		return "group"
	case kmsg.ACLResourceTypeTransactionalId:
		return "transactional id"
	case kmsg.ACLResourceTypeCluster:
		return "cluster"
	}
	return rt.String()
}

// RequiredACLs lists every right the app's principal needs, for this
// topology, application id and guarantee. Internal topics and
// transactional ids are covered by prefixed ACLs on "<AppID>-", so the
// list does not change when stores or instances are added.
func (e *Engine) RequiredACLs() []ACL {
	topic := kmsg.ACLResourceTypeTopic
	var acls []ACL
	add := func(rt kmsg.ACLResourceType, name string, prefixed bool, op kmsg.ACLOperation, reason string) {
		acls = append(acls, ACL{Resource: rt, Name: name, Prefixed: prefixed, Operation: op, Reason: reason})
	}
	sources, sinks := e.userTopics()
	for _, t := range sources {
		add(topic, t, false, kmsg.ACLOperationRead, "consume the input (fetch, list offsets, commit offsets)")
		add(topic, t, false, kmsg.ACLOperationDescribeConfigs, "read the topic's configs at start-up")
	}
	for _, t := range sinks {
		if !slices.Contains(sources, t) {
			add(topic, t, false, kmsg.ACLOperationWrite, "produce the output")
			add(topic, t, false, kmsg.ACLOperationDescribeConfigs, "read max.message.bytes at start-up")
		} else {
			add(topic, t, false, kmsg.ACLOperationWrite, "produce the output")
		}
	}
	prefix := e.cfg.AppID + "-"
	internal := len(e.topo.Repartitions) > 0
	for _, st := range e.topo.Graph.Stores {
		internal = internal || st.Logged
	}
	if internal {
		add(topic, prefix, true, kmsg.ACLOperationCreate, "create the changelog and repartition topics when missing")
		add(topic, prefix, true, kmsg.ACLOperationRead, "restore stores from changelogs, consume repartition topics")
		add(topic, prefix, true, kmsg.ACLOperationWrite, "write changelogs and repartition topics")
		add(topic, prefix, true, kmsg.ACLOperationDelete, "purge repartition topics (DeleteRecords)")
		add(topic, prefix, true, kmsg.ACLOperationDescribeConfigs, "read changelog configs (delete.retention.ms)")
	}
	if dlq := e.cfg.DeadLetterTopic; e.cfg.UseDeadLetter && !(internal && strings.HasPrefix(dlq, prefix)) {
		add(topic, dlq, false, kmsg.ACLOperationCreate, "create the dead-letter topic when missing")
		add(topic, dlq, false, kmsg.ACLOperationWrite, "dead-letter records")
		add(topic, dlq, false, kmsg.ACLOperationDescribeConfigs, "read max.message.bytes at start-up")
	}
	add(kmsg.ACLResourceTypeGroup, e.cfg.AppID, false, kmsg.ACLOperationRead, "join the consumer group, commit and fetch offsets")
	if e.cfg.Guarantee == ExactlyOnce {
		add(kmsg.ACLResourceTypeTransactionalId, prefix, true, kmsg.ACLOperationWrite, "transactions of the producer "+prefix+"<InstanceID>")
	}
	return acls
}

// userTopics are the external source and sink topics, sorted.
func (e *Engine) userTopics() (sources, sinks []string) {
	for _, n := range e.topo.Graph.Nodes {
		switch {
		case n.Kind == graph.KindSource && !n.InternalTopic:
			sources = append(sources, n.Topics...)
		case n.Kind == graph.KindSink && !n.InternalTopic:
			sinks = append(sinks, n.Topic)
		}
	}
	sort.Strings(sources)
	sort.Strings(sinks)
	return slices.Compact(sources), slices.Compact(sinks)
}

// topicsInUse is every topic the app reads or writes: user topics, internal
// topics and the dead-letter topic.
func (e *Engine) topicsInUse() []string {
	sources, sinks := e.userTopics()
	set := map[string]bool{}
	for _, t := range append(sources, sinks...) {
		set[t] = true
	}
	for _, t := range e.repartTops {
		set[t] = true
	}
	for _, t := range e.changelogs {
		set[t] = true
	}
	if e.cfg.UseDeadLetter {
		set[e.cfg.DeadLetterTopic] = true
	}
	out := make([]string, 0, len(set))
	for t := range set {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// requiredOps is the operations RequiredACLs grants on one resource.
func (e *Engine) requiredOps(rt kmsg.ACLResourceType, name string) []kmsg.ACLOperation {
	var ops []kmsg.ACLOperation
	for _, a := range e.RequiredACLs() {
		if a.covers(rt, name) && !containsOp(ops, a.Operation) {
			ops = append(ops, a.Operation)
		}
	}
	return ops
}

func containsOp(ops []kmsg.ACLOperation, op kmsg.ACLOperation) bool {
	for _, o := range ops {
		if o == op {
			return true
		}
	}
	return false
}

// grantFor names the required ACL that grants op on topic.
func (e *Engine) grantFor(topic string, op kmsg.ACLOperation) string {
	for _, a := range e.RequiredACLs() {
		if a.Operation == op && a.covers(kmsg.ACLResourceTypeTopic, topic) {
			return a.String()
		}
	}
	return topic + "/" + opName(op)
}

// describer is the first required operation that implies Describe on a
// resource: a broker that hides the resource (Describe denied) lacks it.
func describer(ops []kmsg.ACLOperation) kmsg.ACLOperation {
	for _, op := range ops {
		switch op {
		case kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationDelete, kmsg.ACLOperationAlter:
			return op
		}
	}
	return kmsg.ACLOperationDescribe
}

// checkACLs compares what the broker says this principal may do with
// RequiredACLs: topic operations through metadata (authorized operations
// of every existing topic the app uses), group operations through
// DescribeGroups. Operations the broker does not report (Create on a
// missing topic, transactional ids) are named at the first denied request.
// It returns the missing rights joined, or nil.
func (e *Engine) checkACLs(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	topics := e.topicsInUse()
	var errs []error
	// One error per missing ACL: a prefixed one covers many topics.
	reported := map[string]bool{}
	details, err := e.adm.ListTopics(kadm.WithAuthorizedOps(ctx), topics...)
	hidden := map[string]error{}
	if isAuthError(err) {
		// kadm fails the whole listing when one topic is hidden (Describe
		// denied): list them one by one to find which.
		details = kadm.TopicDetails{}
		for _, t := range topics {
			d, terr := e.adm.ListTopics(kadm.WithAuthorizedOps(ctx), t)
			switch {
			case isAuthError(terr):
				hidden[t] = terr
			case terr != nil:
				return fmt.Errorf("checking access rights: list topic %s: %w", t, terr)
			default:
				maps.Copy(details, d)
			}
		}
	} else if err != nil {
		return fmt.Errorf("checking access rights: list topics: %w", err)
	}
	for _, t := range topics {
		ops := e.requiredOps(kmsg.ACLResourceTypeTopic, t)
		td, ok := details[t]
		if herr := hidden[t]; herr != nil {
			td, ok = kadm.TopicDetail{Err: herr}, true
		}
		switch {
		case !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition):
			continue // to be created; Create is named if it is denied
		case isAuthError(td.Err):
			errs = append(errs, &AuthorizationError{Resource: kmsg.ACLResourceTypeTopic, Name: t, Operation: describer(ops), Request: "start-up check: metadata (Describe, implied by " + opName(describer(ops)) + ")", Err: td.Err})
			continue
		case td.Err != nil || len(td.AuthorizedOperations) == 0:
			continue // the broker does not report authorized operations
		}
		for _, op := range ops {
			if op == kmsg.ACLOperationCreate {
				continue // needed only while the topic is missing
			}
			if !containsOp(td.AuthorizedOperations, op) && !reported[e.grantFor(t, op)] {
				reported[e.grantFor(t, op)] = true
				errs = append(errs, &AuthorizationError{Resource: kmsg.ACLResourceTypeTopic, Name: t, Operation: op, Request: "start-up check: metadata authorized operations"})
			}
		}
	}
	group := e.cfg.AppID
	described, err := e.adm.DescribeGroups(ctx, group)
	switch {
	case isAuthError(err):
		errs = append(errs, &AuthorizationError{Resource: kmsg.ACLResourceTypeGroup, Name: group, Operation: kmsg.ACLOperationRead, Request: "start-up check: describe group", Err: err})
	case err != nil:
		// Not an authorization problem (a group coordinator moving, ...):
		// the group join reports it if it persists.
		e.log.Debug("start-up check: describe group", "err", err)
	default:
		if g, ok := described[group]; ok && len(g.AuthorizedOperations) > 0 && !containsOp(g.AuthorizedOperations, kmsg.ACLOperationRead) {
			errs = append(errs, &AuthorizationError{Resource: kmsg.ACLResourceTypeGroup, Name: group, Operation: kmsg.ACLOperationRead, Request: "start-up check: describe group authorized operations"})
		}
	}
	return errors.Join(errs...)
}

// denied turns an authorization failure of a request on resource (rt,
// name) needing op into an *AuthorizationError; other errors are returned
// as they are. The broker's error code overrides the resource when it
// names another one (a denied transactional id while producing).
func (e *Engine) denied(err error, rt kmsg.ACLResourceType, name string, op kmsg.ACLOperation, request string) error {
	if err == nil || !isAuthError(err) || errors.Is(err, kerr.SaslAuthenticationFailed) {
		return err
	}
	var ae *AuthorizationError
	if errors.As(err, &ae) {
		return err
	}
	switch {
	case errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		rt, name, op = kmsg.ACLResourceTypeTransactionalId, e.transactionalID(), kmsg.ACLOperationWrite
	case errors.Is(err, kerr.GroupAuthorizationFailed):
		rt, name, op = kmsg.ACLResourceTypeGroup, e.cfg.AppID, kmsg.ACLOperationRead
	case errors.Is(err, kerr.ClusterAuthorizationFailed):
		if rt != kmsg.ACLResourceTypeCluster {
			// An idempotent or transactional producer needs IdempotentWrite
			// on the cluster unless Write on a topic implies it (Kafka >= 3.0).
			rt, name, op = kmsg.ACLResourceTypeCluster, "kafka-cluster", kmsg.ACLOperationIdempotentWrite
		}
	}
	return &AuthorizationError{Resource: rt, Name: name, Operation: op, Request: request, Err: err}
}

// authFailure classifies err as a failed authentication (SASL credentials
// refused, a TLS certificate not trusted or refused) and wraps it with
// ErrAuthentication; other errors are returned as they are.
func (e *Engine) authFailure(err error) error {
	if err == nil || errors.Is(err, ErrAuthentication) {
		return err
	}
	if errors.Is(err, kerr.SaslAuthenticationFailed) || errors.Is(err, kerr.UnsupportedSaslMechanism) || errors.Is(err, kerr.IllegalSaslState) {
		return fmt.Errorf("%w: the brokers rejected the SASL credentials%s: %w", ErrAuthentication, e.cfg.SecuritySummary, err)
	}
	if isTLSFailure(err) {
		return fmt.Errorf("%w: TLS handshake with the brokers failed%s: %w", ErrAuthentication, e.cfg.SecuritySummary, err)
	}
	return err
}

// isTLSFailure reports a TLS handshake that failed on a certificate: not
// trusted, expired, wrong host, or refused by the broker. Retrying does
// not help; it is a configuration error.
func isTLSFailure(err error) bool {
	var (
		cv  *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		hn  x509.HostnameError
		ci  x509.CertificateInvalidError
		al  tls.AlertError
		rhe tls.RecordHeaderError
	)
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) ||
		errors.As(err, &al) || errors.As(err, &rhe)
}

// fatalAuth reports whether err is an authentication or authorization
// failure: never retried.
func fatalAuth(err error) bool {
	return isAuthError(err) || errors.Is(err, ErrAuthentication) || errors.Is(err, ErrNotAuthorized) || isTLSFailure(err) ||
		errors.Is(err, kerr.UnsupportedSaslMechanism) || errors.Is(err, kerr.IllegalSaslState)
}

// explain makes the error that stops the app say what is wrong with its
// security settings: a failed authentication wraps ErrAuthentication; an
// authorization failure not yet naming the missing right is explained by
// asking the broker again what this principal may do.
func (e *Engine) explain(err error) error {
	if err == nil || errors.Is(err, ErrNotAuthorized) || errors.Is(err, ErrAuthentication) {
		return err
	}
	if a := e.authFailure(err); a != err {
		return a
	}
	if !isAuthError(err) {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if cerr := e.checkACLs(ctx); errors.Is(cerr, ErrNotAuthorized) {
		return fmt.Errorf("%w (after the broker refused: %w)", cerr, err)
	}
	return fmt.Errorf("%w: %w", ErrNotAuthorized, err)
}
