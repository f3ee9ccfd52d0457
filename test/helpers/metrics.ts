// Scraping the operations endpoint and reading Prometheus text with a real parser
// (parse-prometheus-text-format), as Prometheus would.
import { createRequire } from 'node:module';

interface ParsedFamily {
  name: string;
  type: string;
  metrics: Array<{ value?: string; labels?: Record<string, string>; buckets?: Record<string, string>; count?: string; sum?: string }>;
}
const parse = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => ParsedFamily[];

export interface HttpAnswer {
  status: number;
  body: string;
}

export async function httpGet(port: number, path: string): Promise<HttpAnswer> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: response.status, body: await response.text() };
}

export class Scrape {
  constructor(readonly families: ParsedFamily[]) {}

  family(name: string): ParsedFamily | undefined {
    return this.families.find((family) => family.name === name);
  }

  /** The sample with exactly these labels (0 if there is none). */
  value(name: string, labels: Record<string, string> = {}): number {
    const family = this.family(name);
    const wanted = JSON.stringify(Object.entries(labels).sort());
    const sample = family?.metrics.find((metric) => JSON.stringify(Object.entries(metric.labels ?? {}).sort()) === wanted);
    return sample ? Number(sample.value) : 0;
  }

  /** Every sample of a family, as labels -> value. */
  samples(name: string): Array<{ labels: Record<string, string>; value: number }> {
    return (this.family(name)?.metrics ?? []).map((metric) => ({ labels: metric.labels ?? {}, value: Number(metric.value) }));
  }

  histogramCount(name: string): number {
    const metric = this.family(name)?.metrics[0];
    return metric?.count === undefined ? 0 : Number(metric.count);
  }
}

export async function scrape(port: number): Promise<Scrape> {
  const { status, body } = await httpGet(port, '/metrics');
  if (status !== 200) throw new Error(`/metrics answered ${status}: ${body}`);
  return new Scrape(parse(body));
}
