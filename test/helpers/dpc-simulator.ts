/**
 * A simulated Android device policy controller speaking Mooring's DPC API as a real one would: it
 * enrolls with the token from its provisioning extras, keeps the credential, checks in (optionally
 * long-polling), applies the policy, carries out commands within what its management mode allows,
 * and reports each result.
 */
import type { AddressInfo } from 'node:net';
import http from 'node:http';
import type { RequestListener } from 'node:http';

export type Mode = 'byod_work_profile' | 'cope_work_profile' | 'fully_managed' | 'dedicated';

export interface DpcCommand {
  id: string;
  type: string;
  action: string;
  params: Record<string, unknown>;
}

export interface CheckinAnswer {
  policy: { id: string; version: number; settings?: Record<string, unknown> } | null;
  commands: DpcCommand[];
}

export class SimulatedDpc {
  credential?: string;
  deviceId?: string;
  policyVersion?: number;
  appliedSettings?: Record<string, unknown>;
  readonly performed: string[] = [];
  workProfile = true;
  locked = false;

  constructor(
    readonly baseUrl: string,
    readonly mode: Mode,
    readonly facts: { serial_number?: string; imei?: string; model: string; manufacturer: string; api_level: number; os_version: string },
    public fcmToken = `fcm-${Math.random().toString(36).slice(2)}`,
  ) {}

  async enroll(token: string): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await this.#post('/android/v1/enroll', { token, mode: this.mode, device: this.facts, fcm_token: this.fcmToken }, false);
    if (res.status === 201) {
      this.credential = res.body.credential as string;
      this.deviceId = res.body.device_id as string;
    }
    return res;
  }

  async checkin(opts: { wait?: number } = {}): Promise<CheckinAnswer> {
    const res = await this.#post('/android/v1/checkin', { policy_version: this.policyVersion, fcm_token: this.fcmToken, status: { battery: 0.8 }, ...opts });
    if (res.status !== 200) throw new Error(`check-in answered ${res.status}: ${JSON.stringify(res.body)}`);
    const answer = res.body as unknown as CheckinAnswer;
    if (answer.policy?.settings) {
      this.policyVersion = answer.policy.version;
      this.appliedSettings = answer.policy.settings;
    }
    return answer;
  }

  /** Carries out each command the way the DPC's role allows and reports it. */
  async run(commands: DpcCommand[]): Promise<void> {
    for (const c of commands) {
      this.performed.push(c.action);
      if (c.action === 'lockNow') this.locked = true;
      if (c.action === 'removeWorkProfile') this.workProfile = false;
      const result = c.action === 'requestDeviceInfo' ? { model: this.facts.model, api_level: this.facts.api_level } : {};
      await this.report(c.id, { status: 'ok', result });
    }
  }

  report(commandId: string, body: Record<string, unknown>) {
    return this.#post(`/android/v1/commands/${commandId}/result`, body);
  }

  raw(path: string, body: unknown, credential = this.credential) {
    return this.#post(path, body, true, credential);
  }

  async #post(path: string, body: unknown, auth = true, credential = this.credential): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await fetch(this.baseUrl + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(auth && credential ? { authorization: `Bearer ${credential}` } : {}) },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  }
}

/** Serves Mooring's request listener on a loopback port, as devices reach it over the network. */
export async function listenOnLoopback(app: RequestListener): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer(app);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
