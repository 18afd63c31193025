// The Prometheus JMX exporter, for real, over MBeans registered here under the object
// names Kafka Connect and Debezium give theirs:
//
//   java -cp <pom.xml's classpath> Scrape.java CONFIG.yml MBEANS.json
//
// MBEANS.json: [{"name": "<object name>", "attributes": {"<attribute>": <value>}}], a value
// a string, boolean, integer (a Java long), number (double), list (a String[]) or object
// (an MXBean Map<String, Long> or Map<String, String>, i.e. TabularData). The exporter's JmxCollector scrapes the
// platform MBean server, as Strimzi's agent does inside a worker, with the rules in
// CONFIG.yml; its metrics are written to stdout in the Prometheus text format.
// Exit status: 0 scraped, 2 usage. tests/test_deploy_jmx.py runs it.

import io.prometheus.jmx.JmxCollector;
import io.prometheus.metrics.expositionformats.PrometheusTextFormatWriter;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import java.io.File;
import java.io.FileReader;
import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import javax.management.Attribute;
import javax.management.AttributeList;
import javax.management.AttributeNotFoundException;
import javax.management.DynamicMBean;
import javax.management.MBeanAttributeInfo;
import javax.management.MBeanInfo;
import javax.management.ObjectName;
import javax.management.openmbean.CompositeDataSupport;
import javax.management.openmbean.CompositeType;
import javax.management.openmbean.OpenType;
import javax.management.openmbean.SimpleType;
import javax.management.openmbean.TabularDataSupport;
import javax.management.openmbean.TabularType;
import org.yaml.snakeyaml.Yaml;

public class Scrape {
    /** An MBean holding fixed attribute values. */
    static final class Fixed implements DynamicMBean {
        private final Map<String, Object> values;

        Fixed(Map<String, Object> values) {
            this.values = values;
        }

        @Override
        public Object getAttribute(String name) throws AttributeNotFoundException {
            if (!values.containsKey(name)) throw new AttributeNotFoundException(name);
            return values.get(name);
        }

        @Override
        public AttributeList getAttributes(String[] names) {
            AttributeList list = new AttributeList();
            for (String name : names) {
                if (values.containsKey(name)) list.add(new Attribute(name, values.get(name)));
            }
            return list;
        }

        @Override
        public void setAttribute(Attribute attribute) {
            throw new UnsupportedOperationException();
        }

        @Override
        public AttributeList setAttributes(AttributeList attributes) {
            throw new UnsupportedOperationException();
        }

        @Override
        public Object invoke(String action, Object[] params, String[] signature) {
            throw new UnsupportedOperationException();
        }

        @Override
        public MBeanInfo getMBeanInfo() {
            List<MBeanAttributeInfo> attributes = new ArrayList<>();
            values.forEach((name, value) -> attributes.add(new MBeanAttributeInfo(
                    name, value.getClass().getName(), name, true, false, false)));
            return new MBeanInfo(Fixed.class.getName(), "fixed values", attributes.toArray(new MBeanAttributeInfo[0]),
                    null, null, null);
        }
    }

    /** A JSON value as the Java type an MXBean attribute of that kind has. */
    static Object java(Object value) throws Exception {
        if (value instanceof Integer i) return i.longValue();
        if (value instanceof List<?> list) return list.stream().map(String::valueOf).toArray(String[]::new);
        if (value instanceof Map<?, ?> map) {
            // how an MXBean maps a Map<String, Long> or Map<String, String>: rows of
            // (key, value), indexed by key
            boolean numbers = map.values().stream().allMatch(v -> v instanceof Number);
            CompositeType row = new CompositeType("entry", "entry", new String[] {"key", "value"},
                    new String[] {"key", "value"},
                    new OpenType<?>[] {SimpleType.STRING, numbers ? SimpleType.LONG : SimpleType.STRING});
            TabularDataSupport table = new TabularDataSupport(new TabularType("map", "map", row, new String[] {"key"}));
            for (Map.Entry<?, ?> e : map.entrySet()) {
                Object cell = numbers ? (Object) ((Number) e.getValue()).longValue() : String.valueOf(e.getValue());
                table.put(new CompositeDataSupport(row, new String[] {"key", "value"},
                        new Object[] {String.valueOf(e.getKey()), cell}));
            }
            return table;
        }
        return value;
    }

    @SuppressWarnings("unchecked")
    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: java -cp CLASSPATH Scrape.java CONFIG.yml MBEANS.json");
            System.exit(2);
        }
        List<Map<String, Object>> beans;
        try (FileReader in = new FileReader(args[1])) {
            beans = (List<Map<String, Object>>) new Yaml().load(in); // JSON is YAML
        }
        var server = ManagementFactory.getPlatformMBeanServer();
        for (Map<String, Object> bean : beans) {
            Map<String, Object> values = new java.util.LinkedHashMap<>();
            for (var e : ((Map<String, Object>) bean.get("attributes")).entrySet()) {
                values.put(e.getKey(), java(e.getValue()));
            }
            server.registerMBean(new Fixed(values), new ObjectName((String) bean.get("name")));
        }
        PrometheusRegistry registry = new PrometheusRegistry();
        new JmxCollector(new File(args[0])).register(registry);
        PrometheusTextFormatWriter.create().write(System.out, registry.scrape());
        System.out.flush();
    }
}
