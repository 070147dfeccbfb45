package sandbox

import (
	"net/url"
	"time"
)

// The types below are the upstream's JSON models. Their tags match the
// specification field for field; optional fields use omitempty or omitzero so
// that a value the upstream would not send stays absent rather than empty.
// Enum-like fields are plain strings because the sandbox must be able to send
// values the specification does not list yet.

// objectMeta is the specification's ObjectMeta.
type objectMeta struct {
	Self         string    `json:"self"`
	ResourceName string    `json:"resource_name,omitempty"`
	CreatedAt    time.Time `json:"created_at,omitzero"`
	UpdatedAt    time.Time `json:"updated_at,omitzero"`
	DeletedAt    time.Time `json:"deleted_at,omitzero"`
}

// uploadSource is the PresignedUrl upload source of both resources.
type uploadSource struct {
	Location string `json:"location"`
	// UploadID is required, yet "returns an empty string in all responses",
	// so it is never omitted and never filled.
	UploadID string `json:"upload_id"`
}

// pluginVersion is ccpm.v1.CustomConnectPluginVersion.
type pluginVersion struct {
	APIVersion string        `json:"api_version"`
	Kind       string        `json:"kind"`
	ID         string        `json:"id"`
	Metadata   *objectMeta   `json:"metadata,omitempty"`
	Spec       versionSpec   `json:"spec"`
	Status     versionStatus `json:"status"`
}

// versionSpec is ccpm.v1.CustomConnectPluginVersionSpec.
type versionSpec struct {
	Version                   string           `json:"version"`
	SensitiveConfigProperties []string         `json:"sensitive_config_properties,omitempty"`
	DocumentationLink         string           `json:"documentation_link,omitempty"`
	ContentFormat             string           `json:"content_format,omitempty"`
	ConnectorClasses          []connectorClass `json:"connector_classes"`
	UploadSource              uploadSource     `json:"upload_source"`
	Environment               envReference     `json:"environment"`
}

// connectorClass is ccpm.v1.ConnectorClass.
type connectorClass struct {
	ClassName string `json:"class_name"`
	Type      string `json:"type"`
}

// envReference is the specification's EnvScopedObjectReference.
type envReference struct {
	ID           string `json:"id"`
	Environment  string `json:"environment,omitempty"`
	Related      string `json:"related"`
	ResourceName string `json:"resource_name"`
}

// versionStatus is ccpm.v1.CustomConnectPluginVersionStatus.
type versionStatus struct {
	Phase        string `json:"phase"`
	ErrorMessage string `json:"error_message,omitempty"`
}

// connectorPlugin is connect.v1.CustomConnectorPlugin.
type connectorPlugin struct {
	APIVersion                string       `json:"api_version"`
	Kind                      string       `json:"kind"`
	ID                        string       `json:"id"`
	Metadata                  *objectMeta  `json:"metadata,omitempty"`
	DisplayName               string       `json:"display_name"`
	ContentFormat             string       `json:"content_format,omitempty"`
	Description               string       `json:"description,omitempty"`
	DocumentationLink         string       `json:"documentation_link,omitempty"`
	ConnectorClass            string       `json:"connector_class"`
	ConnectorType             string       `json:"connector_type"`
	Cloud                     string       `json:"cloud,omitempty"`
	SensitiveConfigProperties []string     `json:"sensitive_config_properties,omitempty"`
	UploadSource              uploadSource `json:"upload_source"`
	RuntimeLanguage           string       `json:"runtime_language,omitempty"`
}

// render returns a copy of p whose self link points at base.
func (p connectorPlugin) render(base string) connectorPlugin {
	if p.Metadata != nil {
		m := *p.Metadata
		m.Self = base + "/connect/v1/custom-connector-plugins/" + url.PathEscape(p.ID)
		p.Metadata = &m
	}
	return p
}

// versionSeed is a version together with the plugin it belongs to, which
// the version's JSON does not carry but its self link needs.
type versionSeed struct {
	pluginID string
	v        pluginVersion
}

// render returns a copy of the version whose self and related links point at
// base.
func (s versionSeed) render(base string) pluginVersion {
	v := s.v
	env := v.Spec.Environment.ID
	if v.Metadata != nil {
		m := *v.Metadata
		m.Self = base + "/ccpm/v1/plugins/" + url.PathEscape(s.pluginID) +
			"/versions/" + url.PathEscape(v.ID) + "?environment=" + url.QueryEscape(env)
		v.Metadata = &m
	}
	// The specification's example points at /v2/environments; the sandbox
	// does not serve it, but the link keeps the upstream's shape.
	v.Spec.Environment.Related = base + "/v2/environments/" + url.PathEscape(env)
	return v
}
