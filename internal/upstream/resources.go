package upstream

import "time"

// The types below mirror the upstream's JSON. Decoding is tolerant: fields this
// version does not know are ignored (and reported, see Hooks.UnknownField),
// and optional fields the upstream leaves out stay nil rather than becoming
// zero values. Enum-like fields are kept as the upstream's strings; giving
// them types is the contract's business. Each resource also keeps its JSON
// exactly as the upstream sent it (Raw), so that a caller who speaks the
// upstream's dialect (the REST face) passes on what this version does not
// know yet, the day the upstream adds it.
//
// A resource the client returns may share its memory with the cache and
// with the other callers of a shared request: callers treat it as read-only.

// resource is what a successful answer decodes into.
type resource interface {
	identity() (id, kind string)
	setRaw(raw []byte)
	assign(from resource)
}

func (v *PluginVersion) identity() (string, string)   { return v.ID, v.Kind }
func (p *ConnectorPlugin) identity() (string, string) { return p.ID, p.Kind }
func (v *PluginVersion) setRaw(raw []byte)            { v.Raw = raw }
func (p *ConnectorPlugin) setRaw(raw []byte)          { p.Raw = raw }
func (v *PluginVersion) assign(from resource)         { *v = *from.(*PluginVersion) }
func (p *ConnectorPlugin) assign(from resource)       { *p = *from.(*ConnectorPlugin) }

// ObjectMeta is the metadata of every persisted resource.
type ObjectMeta struct {
	Self         string     `json:"self"`
	ResourceName *string    `json:"resource_name,omitempty"`
	CreatedAt    *time.Time `json:"created_at,omitempty"`
	UpdatedAt    *time.Time `json:"updated_at,omitempty"`
	DeletedAt    *time.Time `json:"deleted_at,omitempty"`
}

// UploadSource says how a plugin archive was uploaded.
type UploadSource struct {
	Location *string `json:"location,omitempty"`
	UploadID *string `json:"upload_id,omitempty"`
}

// PluginVersion is a ccpm/v1 CustomConnectPluginVersion.
type PluginVersion struct {
	APIVersion string               `json:"api_version"`
	Kind       string               `json:"kind"`
	ID         string               `json:"id"`
	Metadata   *ObjectMeta          `json:"metadata,omitempty"`
	Spec       *PluginVersionSpec   `json:"spec,omitempty"`
	Status     *PluginVersionStatus `json:"status,omitempty"`
	// Raw is the resource's JSON as the upstream sent it.
	Raw []byte `json:"-"`
}

// PluginVersionSpec is the desired state of a plugin version.
type PluginVersionSpec struct {
	Version                   string                    `json:"version"`
	SensitiveConfigProperties []string                  `json:"sensitive_config_properties,omitempty"`
	DocumentationLink         *string                   `json:"documentation_link,omitempty"`
	ContentFormat             *string                   `json:"content_format,omitempty"`
	ConnectorClasses          []ConnectorClass          `json:"connector_classes,omitempty"`
	UploadSource              *UploadSource             `json:"upload_source,omitempty"`
	Environment               *EnvScopedObjectReference `json:"environment,omitempty"`
}

// ConnectorClass is one connector implementation in a plugin.
type ConnectorClass struct {
	ClassName string  `json:"class_name"`
	Type      *string `json:"type,omitempty"`
}

// EnvScopedObjectReference points at another resource.
type EnvScopedObjectReference struct {
	ID           string  `json:"id"`
	Environment  *string `json:"environment,omitempty"`
	Related      string  `json:"related"`
	ResourceName string  `json:"resource_name"`
}

// PluginVersionStatus is the observed state of a plugin version.
type PluginVersionStatus struct {
	Phase        *string `json:"phase,omitempty"`
	ErrorMessage *string `json:"error_message,omitempty"`
}

// ConnectorPlugin is a connect/v1 CustomConnectorPlugin.
type ConnectorPlugin struct {
	APIVersion                string        `json:"api_version"`
	Kind                      string        `json:"kind"`
	ID                        string        `json:"id"`
	Metadata                  *ObjectMeta   `json:"metadata,omitempty"`
	DisplayName               string        `json:"display_name"`
	ContentFormat             *string       `json:"content_format,omitempty"`
	Description               *string       `json:"description,omitempty"`
	DocumentationLink         *string       `json:"documentation_link,omitempty"`
	ConnectorClass            string        `json:"connector_class"`
	ConnectorType             *string       `json:"connector_type,omitempty"`
	Cloud                     *string       `json:"cloud,omitempty"`
	SensitiveConfigProperties []string      `json:"sensitive_config_properties,omitempty"`
	UploadSource              *UploadSource `json:"upload_source,omitempty"`
	RuntimeLanguage           *string       `json:"runtime_language,omitempty"`
	// Raw is the resource's JSON as the upstream sent it.
	Raw []byte `json:"-"`
}
