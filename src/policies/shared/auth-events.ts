/** What the jwt and api_key policies tell observers when they refuse a caller. */
export type AuthPolicyName = 'jwt' | 'api_key'

declare module '../../core/events.ts' {
  interface GatewayEventMap {
    auth_reject: { route: string; policy: AuthPolicyName; reason: string }
  }
}
