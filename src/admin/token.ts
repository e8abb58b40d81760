/** The admin listener's lock-down: loopback by default, a bearer token anywhere else. */

/** Shorter tokens can be guessed; 16 bytes of random text is the least we accept. */
export const MIN_ADMIN_TOKEN_LENGTH = 16

/**
 * The admin bearer token from the environment variable named by admin_token_env, or undefined
 * when none is configured. Throws when one is configured but missing or too short, so the gateway
 * does not start (or a reload is refused) with an admin listener it cannot lock.
 */
export function adminToken(tokenEnv: string | undefined, env: (name: string) => string | undefined): string | undefined {
  if (tokenEnv === undefined) return undefined
  const token = env(tokenEnv)?.trim()
  if (token === undefined || token === '') throw new Error(`environment variable ${tokenEnv} (gateway.admin_token_env) is not set`)
  if (token.length < MIN_ADMIN_TOKEN_LENGTH) {
    throw new Error(`the admin token in ${tokenEnv} is ${token.length} characters; use at least ${MIN_ADMIN_TOKEN_LENGTH}`)
  }
  return token
}
