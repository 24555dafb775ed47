// Package v1alpha1 is the chat.hubbub.dev/v1alpha1 API: the ChatRoom resource
// that platform teams apply and the Hubbub operator turns into running chat.
//
// +kubebuilder:object:generate=true
// +groupName=chat.hubbub.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the API group and version of this package's types.
	GroupVersion = schema.GroupVersion{Group: "chat.hubbub.dev", Version: "v1alpha1"}

	// SchemeBuilder registers this package's types with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds this package's types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &ChatRoom{}, &ChatRoomList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
