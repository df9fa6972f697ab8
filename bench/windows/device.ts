/**
 * The test suite's SimulatedWindowsDevice with three bench changes, none to what it sends:
 * - its transport can be swapped (`transport`): the main thread captures the real Discover,
 *   GetPolicies and RequestSecurityToken messages before the clock starts, later replays the server's
 *   answer through the device's own checks; the load thread sends over keep-alive HTTPS;
 * - its RSA key can come from a small pool generated up front (RSA-2048 generation is ~0.5 s of CPU
 *   here, the device's cost, not the server's; every device still has its own DeviceID, CSR and
 *   certificate);
 * - its CSR is made once and kept, so replaying the enrollment does not sign a second one.
 */
import crypto from 'node:crypto';
import { SimulatedWindowsDevice, type HttpAnswer, type Provisioning, type WindowsDeviceOptions } from '../../test/helpers/windows-device';

type CryptoKeyPair = crypto.webcrypto.CryptoKeyPair;

export interface TransportOptions {
  headers?: Record<string, string>;
  body?: string | Buffer;
  tls?: { certPem: string; keyPem: string };
}
export type Transport = (method: string, url: string, opts: TransportOptions) => Promise<HttpAnswer>;

/** What the load thread needs to rebuild an enrolled device. */
export interface DeviceState {
  options: WindowsDeviceOptions;
  deviceId: string;
  hwDevId: string;
  serialNumber: string;
  email: string;
  provisioning: Provisioning;
  keyPem: string;
}

export class BenchDevice extends SimulatedWindowsDevice {
  transport?: Transport;
  #pooledKeys?: Promise<CryptoKeyPair>;
  #csr?: Promise<Buffer>;
  #keyPem?: string;

  constructor(opts: WindowsDeviceOptions, keys?: Promise<CryptoKeyPair>) {
    super(opts);
    this.#pooledKeys = keys;
  }

  /** An enrolled device as the main thread knew it (its identity fixed, its key as PEM). */
  static restore(state: DeviceState): BenchDevice {
    const d = new BenchDevice({ ...state.options, email: state.email });
    // The identity fields are readonly, set at construction from random bytes: put back the real ones.
    for (const [k, v] of [['deviceId', state.deviceId], ['hwDevId', state.hwDevId], ['serialNumber', state.serialNumber]] as const) {
      Object.defineProperty(d, k, { value: v, writable: false, enumerable: true, configurable: true });
    }
    d.provisioning = state.provisioning;
    d.#keyPem = state.keyPem;
    return d;
  }

  override keys(): Promise<CryptoKeyPair> {
    return this.#pooledKeys ?? super.keys();
  }

  override async keyPem(): Promise<string> {
    return this.#keyPem ?? super.keyPem();
  }

  override async csr(): Promise<Buffer> {
    this.#csr ??= super.csr();
    return Buffer.from(await this.#csr);
  }

  override request(method: string, url: string, opts: TransportOptions = {}): Promise<HttpAnswer> {
    return this.transport ? this.transport(method, url, opts) : super.request(method, url, opts);
  }

  async state(): Promise<DeviceState> {
    if (!this.provisioning) throw new Error(`device ${this.deviceId} is not enrolled`);
    return {
      options: this.opts,
      deviceId: this.deviceId,
      hwDevId: this.hwDevId,
      serialNumber: this.serialNumber,
      email: this.email,
      provisioning: this.provisioning,
      keyPem: await this.keyPem(),
    };
  }
}
