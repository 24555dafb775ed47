package controllers

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// applyConfiguration is what client-go's generated apply configurations share.
type applyConfiguration interface {
	runtime.ApplyConfiguration
	GetName() *string
	GetNamespace() *string
	GetKind() *string
}

// ownershipError says an object the room needs exists and belongs to
// something else; the operator will not take it over.
type ownershipError struct{ kind, name string }

func (e *ownershipError) Error() string {
	return fmt.Sprintf("%s %s exists and is not controlled by this ChatRoom; delete or rename it", e.kind, e.name)
}

// applyOwned makes the live object match desired and returns it.
//
// It writes only when needed: the fields this operator owns in the cached
// object (managedFields, read back with extract) are compared with desired,
// and a server-side apply is sent only when they differ — the object is new,
// the room changed, or someone edited or deleted what the operator owns
// (their edit took ownership of the field, so it no longer reads back). An
// unchanged room thus costs no writes, and drift is put back.
func applyOwned[T client.Object, AC applyConfiguration](ctx context.Context, r *Reconciler, s *scope, newObj func() T, extract func(T, string) (AC, error), desired AC) (T, error) {
	var zero T
	kind := ptr.Deref(desired.GetKind(), "")
	key := client.ObjectKey{Namespace: ptr.Deref(desired.GetNamespace(), ""), Name: ptr.Deref(desired.GetName(), "")}
	obj := newObj()
	action := "Updated"
	err := r.Client.Get(ctx, key, obj)
	switch {
	case err == nil:
		if !metav1.IsControlledBy(obj, s.room) {
			return zero, &ownershipError{kind, key.Name}
		}
		current, err := extract(obj, FieldManager)
		if err != nil {
			return zero, fmt.Errorf("%s %s: read managed fields: %w", kind, key.Name, err)
		}
		if equality.Semantic.DeepEqual(current, desired) {
			return obj, nil
		}
	case apierrors.IsNotFound(err):
		// The cache holds only objects labelled as the operator's. One that
		// lost its label, or someone else's of the same name, only shows up
		// to a live read; this costs a request only when something is amiss.
		obj = newObj()
		switch err := r.APIReader.Get(ctx, key, obj); {
		case apierrors.IsNotFound(err):
			action = "Created"
		case err != nil:
			return zero, fmt.Errorf("get %s %s: %w", kind, key.Name, err)
		case !metav1.IsControlledBy(obj, s.room):
			return zero, &ownershipError{kind, key.Name}
		}
	default:
		return zero, fmt.Errorf("get %s %s: %w", kind, key.Name, err)
	}

	if err := r.Client.Apply(ctx, desired, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return zero, fmt.Errorf("apply %s %s: %w", kind, key.Name, err)
	}
	s.eventf(corev1.EventTypeNormal, action, "Apply", "%s %s %s", action, kind, key.Name)
	// Apply decoded the server's answer into desired: that is the live object.
	live := newObj()
	b, err := json.Marshal(desired)
	if err == nil {
		err = json.Unmarshal(b, live)
	}
	if err != nil {
		return zero, fmt.Errorf("decode applied %s %s: %w", kind, key.Name, err)
	}
	return live, nil
}

// deleteOwned deletes the room's object of obj's type and name if it exists
// and the room controls it (a same-named object of someone else's is left alone).
func deleteOwned(ctx context.Context, r *Reconciler, s *scope, obj client.Object, name string) error {
	key := client.ObjectKey{Namespace: s.room.Namespace, Name: name}
	gvk, err := apiutil.GVKForObject(obj, r.Client.Scheme())
	if err != nil {
		return err
	}
	if err := r.Client.Get(ctx, key, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("get %s %s: %w", gvk.Kind, name, err)
	}
	if !metav1.IsControlledBy(obj, s.room) {
		return nil
	}
	uid := obj.GetUID()
	if err := r.Client.Delete(ctx, obj, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("delete %s %s: %w", gvk.Kind, name, err)
	}
	s.eventf(corev1.EventTypeNormal, "Deleted", "Delete", "Deleted %s %s: no longer wanted", gvk.Kind, name)
	return nil
}
