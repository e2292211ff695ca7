/**
 * A Core SDK document with what local evaluation must get right: standard, multivariate and
 * server-key-only features, a disabled flag, segments with priorities and nested rules, a
 * percentage split, and an identity override.
 */
export function richDocument (): Record<string, unknown> {
  const fs = (id: number, featureId: number, name: string, enabled: boolean, value: unknown, extra: Record<string, unknown> = {}) => ({
    feature: { id: featureId, name, type: extra.mv !== undefined ? 'MULTIVARIATE' : 'STANDARD' },
    enabled,
    django_id: id,
    featurestate_uuid: `00000000-0000-4000-8000-${String(id).padStart(12, '0')}`,
    feature_state_value: value,
    feature_segment: extra.priority === undefined ? null : { priority: extra.priority },
    multivariate_feature_state_values: (extra.mv as unknown[] | undefined) ?? []
  })
  const colours = [
    { id: 501, mv_fs_value_uuid: '10000000-0000-4000-8000-000000000501', percentage_allocation: 30, multivariate_feature_option: { id: 41, value: 'red', key: 'red_key' } },
    { id: 502, mv_fs_value_uuid: '10000000-0000-4000-8000-000000000502', percentage_allocation: 30, multivariate_feature_option: { id: 42, value: 'green', key: 'green_key' } }
  ]
  return {
    id: 7,
    api_key: 'client_rich',
    name: 'Rich',
    allow_client_traits: true,
    updated_at: '2025-03-01T10:00:00.000000+00:00',
    hide_sensitive_data: false,
    hide_disabled_flags: null,
    use_identity_composite_key_for_hashing: true,
    use_identity_overrides_in_local_eval: true,
    project: {
      id: 3,
      name: 'P',
      hide_disabled_flags: false,
      enable_realtime_updates: false,
      server_key_only_feature_ids: [4],
      organisation: { id: 1, name: 'O', feature_analytics: false, stop_serving_flags: false, persist_trait_data: true },
      segments: [
        {
          id: 11,
          name: 'pro_users',
          rules: [{ type: 'ALL', conditions: [], rules: [{ type: 'ANY', conditions: [{ operator: 'EQUAL', property_: 'plan', value: 'pro' }, { operator: 'GREATER_THAN', property_: 'seats', value: '50' }], rules: [] }] }],
          feature_states: [fs(9001, 1, 'banner', true, 'pro banner', { priority: 1 })]
        },
        {
          id: 12,
          name: 'half',
          rules: [{ type: 'ALL', conditions: [{ operator: 'PERCENTAGE_SPLIT', property_: null, value: '50' }], rules: [] }],
          feature_states: [fs(9002, 1, 'banner', true, 'half banner', { priority: 2 }), fs(9003, 3, 'dark_mode', true, 'on', { priority: 2 })]
        }
      ]
    },
    feature_states: [
      fs(101, 1, 'banner', true, 'hello'),
      fs(102, 2, 'colour', true, 'blue', { mv: colours }),
      fs(103, 3, 'dark_mode', false, null),
      fs(104, 4, 'secret_algo', true, 'v2'),
      fs(105, 5, 'max_items', true, 10)
    ],
    identity_overrides: [
      {
        identifier: 'vip',
        environment_api_key: 'client_rich',
        created_date: '2025-01-01T00:00:00+00:00',
        identity_uuid: '20000000-0000-4000-8000-000000000001',
        django_id: 77,
        dashboard_alias: null,
        composite_key: 'client_rich_vip',
        identity_features: [fs(7001, 5, 'max_items', true, 999)],
        identity_traits: []
      }
    ]
  }
}
